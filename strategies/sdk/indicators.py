"""Incremental indicators: each `update()` is O(1) (Highest/Lowest amortised O(1)).

Each returns its current value from `update()` and exposes it as `.value`; the value is None
until the window is full ("warm-up"), so a strategy can write `if sma.value is None: return`.
"""

import math
from collections import deque


class SMA:
    def __init__(self, period: int):
        if int(period) < 1:
            raise ValueError("SMA period must be at least 1")
        self.period = int(period)
        self._window: deque[float] = deque()
        self._sum = 0.0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        window = self._window
        window.append(x)
        if self.value is not None:
            # A running sum: re-summing would cost O(period); the drift over millions of bars
            # stays around 1e-9 of the price.
            self._sum += x - window.popleft()
            self.value = self._sum / self.period
        else:
            self._sum += x
            if len(window) == self.period:
                self.value = self._sum / self.period
        return self.value


class EMA:
    """Exponential moving average seeded with the SMA of the first `period` values."""

    def __init__(self, period: int):
        if int(period) < 1:
            raise ValueError("EMA period must be at least 1")
        self.period = int(period)
        self.alpha = 2.0 / (self.period + 1)
        self._count = 0
        self._seed_sum = 0.0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        self._count += 1
        if self._count < self.period:
            self._seed_sum += x
        elif self._count == self.period:
            self.value = (self._seed_sum + x) / self.period
        else:
            self.value += self.alpha * (x - self.value)
        return self.value


class RollingStd:
    """Rolling sample standard deviation (ddof=1 by default) over `period` values."""

    def __init__(self, period: int, ddof: int = 1):
        if int(period) < 2:
            raise ValueError("RollingStd period must be at least 2")
        self.period = int(period)
        self.ddof = ddof
        self._window: deque[float] = deque()
        self._sum = 0.0
        self._sumsq = 0.0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        self._window.append(x)
        self._sum += x
        self._sumsq += x * x
        if len(self._window) > self.period:
            old = self._window.popleft()
            self._sum -= old
            self._sumsq -= old * old
        if len(self._window) == self.period:
            n = self.period
            variance = (self._sumsq - self._sum * self._sum / n) / (n - self.ddof)
            self.value = math.sqrt(max(variance, 0.0))
        return self.value


class ATR:
    """Average true range with Wilder's smoothing, seeded with the mean of the first `period` TRs."""

    def __init__(self, period: int = 14):
        if int(period) < 1:
            raise ValueError("ATR period must be at least 1")
        self.period = int(period)
        self._prev_close: float | None = None
        self._count = 0
        self._seed_sum = 0.0
        self.value: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        if self._prev_close is None:
            true_range = high - low
        else:
            true_range = max(high - low, abs(high - self._prev_close), abs(low - self._prev_close))
        self._prev_close = close
        self._count += 1
        if self._count < self.period:
            self._seed_sum += true_range
        elif self._count == self.period:
            self.value = (self._seed_sum + true_range) / self.period
        else:
            self.value = (self.value * (self.period - 1) + true_range) / self.period
        return self.value


class _MonotonicExtreme:
    def __init__(self, period: int, keep):
        if int(period) < 1:
            raise ValueError("period must be at least 1")
        self.period = int(period)
        self._keep = keep
        self._candidates: deque[tuple[int, float]] = deque()
        self._index = 0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        while self._candidates and not self._keep(self._candidates[-1][1], x):
            self._candidates.pop()
        self._candidates.append((self._index, x))
        if self._candidates[0][0] <= self._index - self.period:
            self._candidates.popleft()
        self._index += 1
        if self._index >= self.period:
            self.value = self._candidates[0][1]
        return self.value


class Highest(_MonotonicExtreme):
    """Highest value over the last `period` updates."""

    def __init__(self, period: int):
        super().__init__(period, keep=lambda kept, new: kept > new)


class Lowest(_MonotonicExtreme):
    """Lowest value over the last `period` updates."""

    def __init__(self, period: int):
        super().__init__(period, keep=lambda kept, new: kept < new)
