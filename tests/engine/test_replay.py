"""The replay feed on a fake clock: bars in close-time order across subscriptions, each handed
over once the scaled clock has passed its close, loaded window by window, then finished."""

from datetime import date

import numpy as np

from runs.engine.feed import Instrument, Subscription, from_ns
from runs.engine.replay import ReplayFeed, default_replay_start
from runs.engine.sessions import sessions_between
from strategies.sdk.enums import AssetType, BarFrequency
from tests.engine.factories import NS_PER_MINUTE, MemoryMarketData, SecurityInfoFactory, session_times, utc, walk_bars

MSFT = SecurityInfoFactory(symbol="MSFT")
SPY = SecurityInfoFactory(symbol="SPY")


class FakeClock:
    """Wall seconds that move only when something sleeps."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def subscription(index, security, frequency):
    instrument = Instrument(security)
    instrument.sessions = sessions_between("XNYS", utc(2017, 1, 1), utc(2017, 12, 31))
    return Subscription(index, instrument, frequency)


def last_bar_time_of(market_data):
    def last(symbol, asset_type, frequency):
        bars = market_data.bar_sets.get((symbol, AssetType(asset_type), str(frequency)))
        return from_ns(int(bars.times[-1])) if bars is not None and len(bars) else None

    return last


def feed_for(market_data, *, start, speed, clock):
    return ReplayFeed(market_data=market_data, last_bar_time=last_bar_time_of(market_data), start=start, speed=speed, clock=clock, sleep=clock.sleep)


def test_bars_are_delivered_in_order_when_the_scaled_clock_passes_their_close():
    minutes = session_times(date(2017, 3, 1), date(2017, 3, 1))[:10]  # 14:30 .. 14:39 UTC
    market_data = MemoryMarketData([MSFT], {("MSFT", "equity", "minute"): walk_bars(minutes)})
    clock = FakeClock()
    feed = feed_for(market_data, start=from_ns(int(minutes[0])), speed=60, clock=clock)  # a market minute per wall second
    assert feed.subscribe([subscription(0, MSFT, BarFrequency.MINUTE)]) == {}
    began = clock.now
    delivered = []
    while not feed.finished:
        for bar in feed.next_bars(5.0):
            delivered.append((bar.time_ns, bar.close_ns, clock.now - began))
            assert feed.now_ns() >= bar.close_ns
    assert [time for time, _, _ in delivered] == minutes.tolist()
    # The bar opening at minute k closes at minute k+1: delivered k+1 wall seconds after the start.
    assert [round(at, 6) for _, _, at in delivered] == [float(k + 1) for k in range(10)]
    assert all(close - time == NS_PER_MINUTE for time, close, _ in delivered)


def test_a_timeout_returns_nothing_and_advances_the_watermark():
    minutes = session_times(date(2017, 3, 1), date(2017, 3, 1))[:5]
    market_data = MemoryMarketData([MSFT], {("MSFT", "equity", "minute"): walk_bars(minutes)})
    clock = FakeClock()
    feed = feed_for(market_data, start=from_ns(int(minutes[0])), speed=6, clock=clock)  # a market minute per 10 s
    feed.subscribe([subscription(0, MSFT, BarFrequency.MINUTE)])
    assert feed.next_bars(4.0) == []
    assert clock.now == 1004.0
    assert feed.now_ns() == int(minutes[0]) + 24 * 1_000_000_000  # 4 wall seconds at 6x
    assert feed.seconds_until(int(minutes[1])) == 6.0
    assert [bar.time_ns for bar in feed.next_bars(60.0)] == [int(minutes[0])]
    assert clock.now == 1010.0


def test_subscriptions_merge_by_close_time_finer_first_and_daily_bars_close_at_the_bell():
    days = session_times(date(2017, 3, 1), date(2017, 3, 2), daily=True)
    minutes = session_times(date(2017, 3, 1), date(2017, 3, 2), frequency_seconds=3600)  # hourly, as minute-like bars
    market_data = MemoryMarketData(
        [MSFT, SPY],
        {("MSFT", "equity", "day"): walk_bars(days), ("SPY", "equity", "hour"): walk_bars(minutes, seed=2)},
    )
    clock = FakeClock()
    feed = feed_for(market_data, start=from_ns(int(days[0])), speed=3600, clock=clock)
    feed.subscribe([subscription(0, MSFT, BarFrequency.DAY), subscription(1, SPY, BarFrequency.HOUR)])
    delivered = []
    while not feed.finished:
        delivered.extend(feed.next_bars(100.0))
    closes = [bar.close_ns for bar in delivered]
    assert closes == sorted(closes)
    sessions = sessions_between("XNYS", utc(2017, 1, 1), utc(2017, 12, 31))
    daily = [bar for bar in delivered if bar.subscription == 0]
    assert [bar.close_ns for bar in daily] == [c for c in sessions.close_list if int(days[0]) < c <= int(days[-1]) + 86_400 * 10**9][:2]
    # At the bell the last hourly bar (cut at the close) and the daily bar close together: the hourly first.
    at_close = [bar.subscription for bar in delivered if bar.close_ns == daily[0].close_ns]
    assert at_close == [1, 0]
    assert len(delivered) == len(days) + len(minutes)


def test_a_long_replay_is_loaded_in_windows_not_all_at_once():
    minutes = session_times(date(2017, 3, 1), date(2017, 4, 28))
    market_data = MemoryMarketData([MSFT], {("MSFT", "equity", "minute"): walk_bars(minutes)})
    clock = FakeClock()
    feed = feed_for(market_data, start=from_ns(int(minutes[0])), speed=60, clock=clock)
    feed.subscribe([subscription(0, MSFT, BarFrequency.MINUTE)])
    first = feed.next_bars(2.0)
    assert len(first) == 1
    assert len(market_data.requests) == 1  # one week of market time so far
    assert market_data.requests[0][4] - market_data.requests[0][3] < (from_ns(int(minutes[-1])) - from_ns(int(minutes[0])))


def test_a_subscription_without_stored_bars_after_the_start_is_not_served():
    minutes = session_times(date(2017, 3, 1), date(2017, 3, 1))
    market_data = MemoryMarketData([MSFT, SPY], {("MSFT", "equity", "minute"): walk_bars(minutes)})
    clock = FakeClock()
    feed = feed_for(market_data, start=utc(2017, 3, 1, 14, 30), speed=60, clock=clock)
    unserved = feed.subscribe([subscription(0, MSFT, BarFrequency.MINUTE), subscription(1, SPY, BarFrequency.MINUTE)])
    assert list(unserved) == [1]
    assert "No stored SPY (equity) minute bars from 2017-03-01 14:30 UTC" in unserved[1]
    late = feed_for(market_data, start=utc(2017, 3, 2, 14, 30), speed=60, clock=clock)
    assert list(late.subscribe([subscription(0, MSFT, BarFrequency.MINUTE)])) == [0]
    assert late.finished


def test_the_default_start_replays_the_last_sessions_of_data():
    sessions = sessions_between("XNYS", utc(2017, 1, 1), utc(2017, 12, 31))
    start = default_replay_start(utc(2017, 11, 10, 20, 59), sessions, sessions_back=5)
    assert start == utc(2017, 11, 6, 14, 30)  # Mon..Fri of that week
    assert np.datetime64(start.replace(tzinfo=None)) < np.datetime64("2017-11-10T20:59")
