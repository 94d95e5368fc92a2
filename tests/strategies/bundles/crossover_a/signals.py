"""Version A: the fast mean crosses above the slow mean."""

SOURCE = "a"


def mean(values):
    return sum(values) / len(values)


def crossover(closes, fast, slow):
    if len(closes) <= slow:
        return False
    return mean(closes[-fast - 1 : -1]) <= mean(closes[-slow - 1 : -1]) and mean(closes[-fast:]) > mean(closes[-slow:])


def explode():
    return {}["missing"]
