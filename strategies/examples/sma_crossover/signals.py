"""Crossover detection for two series that arrive one value at a time."""

ABOVE = "above"
BELOW = "below"


class CrossoverDetector:
    """Tracks which side of `slow` the `fast` value is on.

    `update(fast, slow)` returns ABOVE on the update where fast moves from at-or-below slow to
    above it, BELOW when it moves from above to at-or-below, and None otherwise (including the
    first update, which has nothing to cross from).
    """

    def __init__(self):
        self._above = None

    def update(self, fast: float, slow: float) -> str | None:
        above = fast > slow
        previous, self._above = self._above, above
        if previous is None or previous == above:
            return None
        return ABOVE if above else BELOW
