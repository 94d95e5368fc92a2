"""Version B: never trades."""

SOURCE = "b"


def crossover(closes, fast, slow):
    return False
