"""Local servers that stand in for outside services in tests, speaking their real protocols."""
