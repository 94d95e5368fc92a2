"""The SDK's incremental indicators against straightforward whole-series computations."""

import math

import numpy as np
import pandas as pd
import pytest

from strategies.sdk.indicators import ATR, EMA, SMA, Highest, Lowest, RollingStd

PRICES = list(100 + np.cumsum(np.random.default_rng(3).normal(0, 1, 500)))


def feed(indicator, values):
    return [indicator.update(value) for value in values]


def test_sma_is_none_while_warming_up_then_the_window_mean():
    values = feed(SMA(20), PRICES)
    assert values[:19] == [None] * 19
    expected = pd.Series(PRICES).rolling(20).mean().tolist()
    assert values[19:] == pytest.approx(expected[19:], rel=1e-12)


def test_ema_is_seeded_with_the_sma_of_the_first_period():
    values = feed(EMA(10), PRICES)
    assert values[:9] == [None] * 9
    assert values[9] == pytest.approx(sum(PRICES[:10]) / 10)
    expected, alpha = values[9], 2 / 11
    for price, value in zip(PRICES[10:], values[10:], strict=True):
        expected += alpha * (price - expected)
        assert value == pytest.approx(expected, rel=1e-12)


def test_rolling_std_is_the_sample_standard_deviation():
    values = feed(RollingStd(20), PRICES)
    expected = pd.Series(PRICES).rolling(20).std(ddof=1).tolist()
    assert values[:19] == [None] * 19
    assert values[19:] == pytest.approx(expected[19:], rel=1e-9)


def test_atr_uses_wilders_smoothing_of_the_true_range():
    highs = [p + 1 for p in PRICES]
    lows = [p - 1.5 for p in PRICES]
    atr = ATR(14)
    values = [atr.update(h, low, c) for h, low, c in zip(highs, lows, PRICES, strict=True)]
    ranges = [highs[0] - lows[0]] + [
        max(h - low, abs(h - previous), abs(low - previous))
        for h, low, previous in zip(highs[1:], lows[1:], PRICES[:-1], strict=True)
    ]
    expected = sum(ranges[:14]) / 14
    assert values[13] == pytest.approx(expected)
    for true_range, value in zip(ranges[14:], values[14:], strict=True):
        expected = (expected * 13 + true_range) / 14
        assert value == pytest.approx(expected)


def test_highest_and_lowest_over_the_window():
    highs, lows = feed(Highest(7), PRICES), feed(Lowest(7), PRICES)
    assert highs[:6] == [None] * 6 and lows[:6] == [None] * 6
    for index in range(6, len(PRICES)):
        window = PRICES[index - 6 : index + 1]
        assert (highs[index], lows[index]) == (max(window), min(window))


@pytest.mark.parametrize("make", [lambda: SMA(0), lambda: EMA(0), lambda: RollingStd(1), lambda: ATR(0), lambda: Highest(0)])
def test_bad_periods_are_refused(make):
    with pytest.raises(ValueError, match="must be at least"):
        make()


def test_a_one_bar_sma_is_the_value_itself():
    assert feed(SMA(1), [3.0, 4.0, 5.5]) == [3.0, 4.0, 5.5]
    assert math.isclose(feed(SMA(3), [1.0, 2.0, 3.0, 4.0])[-1], 3.0)
