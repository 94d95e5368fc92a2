"""Clients for outside services (brokers, market data vendors), Django-free."""
