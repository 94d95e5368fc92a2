"""Sessions, bar emit times, the merge order and gap detection, on plain arrays."""

from datetime import date

import numpy as np

from runs.engine.feed import (
    Instrument,
    MergedFeed,
    Subscription,
    clean_bars,
    find_gaps,
    from_ns,
    place_on_sessions,
    to_ns,
)
from runs.engine.records import BarArrays
from runs.engine.sessions import sessions_between
from strategies.sdk import BarFrequency
from tests.engine.factories import SecurityInfoFactory, session_times, utc, walk_bars

XNYS = sessions_between("XNYS", utc(2020, 1, 1), utc(2020, 2, 1))


def subscription(index, frequency, times, symbol="MSFT"):
    sub = Subscription(index, Instrument(SecurityInfoFactory.build(symbol=symbol)), frequency)
    sub.bars = walk_bars(times, seed=index + 1)
    place_on_sessions(sub, XNYS)
    return sub


def test_an_order_placed_at_or_after_a_close_works_in_the_next_session():
    jan2 = XNYS.working_session(to_ns(utc(2020, 1, 2, 15)))
    assert from_ns(XNYS.close_list[jan2]) == utc(2020, 1, 2, 21)
    assert XNYS.working_session(to_ns(utc(2020, 1, 2, 21))) == jan2 + 1
    assert XNYS.working_session(to_ns(utc(2020, 1, 4, 12))) == jan2 + 2  # Saturday: Monday's session
    assert from_ns(XNYS.open_list[jan2 + 2]) == utc(2020, 1, 6, 14, 30)


def test_emit_times_intraday_at_open_plus_frequency_cut_at_the_close_daily_at_the_session_close():
    hours = subscription(0, BarFrequency.HOUR, session_times(date(2020, 1, 2), date(2020, 1, 2), frequency_seconds=3600))
    assert [from_ns(t).strftime("%H:%M") for t in hours.close_ns] == ["15:30", "16:30", "17:30", "18:30", "19:30", "20:30", "21:00"]
    # A daily bar stored at midnight UTC trades from the session open and is emitted at its close.
    midnight = np.array([to_ns(utc(2020, 1, 2)), to_ns(utc(2020, 1, 3))], dtype=np.int64)
    days = subscription(1, BarFrequency.DAY, midnight)
    assert [from_ns(t) for t in days.bar_open_ns] == [utc(2020, 1, 2, 14, 30), utc(2020, 1, 3, 14, 30)]
    assert [from_ns(t) for t in days.close_ns] == [utc(2020, 1, 2, 21), utc(2020, 1, 3, 21)]


def test_merge_orders_by_emit_time_then_frequency_then_subscription():
    day = date(2020, 1, 2)
    daily = subscription(0, BarFrequency.DAY, session_times(day, day, daily=True))
    hourly = subscription(1, BarFrequency.HOUR, session_times(day, day, frequency_seconds=3600))
    minute_b = subscription(2, BarFrequency.MINUTE, session_times(day, day), symbol="B")
    minute_a = subscription(3, BarFrequency.MINUTE, session_times(day, day), symbol="A")
    feed = MergedFeed([daily, hourly, minute_b, minute_a])
    assert len(feed) == 1 + 7 + 390 * 2
    assert (np.diff(feed.emit_ns) >= 0).all()
    last_four = [int(i) for i in feed.subscription_index[-4:]]
    assert last_four == [2, 3, 1, 0]  # at 21:00: minute B, minute A (subscription order), hour, day
    assert feed.group_end.sum() == 390 and feed.group_end[-1]
    chunks = list(feed.chunks())
    assert sum(len(chunk[1]) for chunk in chunks) == len(feed)
    first = chunks[0]
    assert first[2][:2] == [2, 3] and first[3][0] == to_ns(utc(2020, 1, 2, 14, 30))  # bar open times in ns


def test_clean_bars_keeps_the_window_finite_prices_and_unique_ascending_times():
    times = np.array([5, 1, 3, 3, 9, 7], dtype=np.int64)
    prices = np.array([5.0, 1.0, 3.0, 33.0, 9.0, np.nan])
    cleaned = clean_bars(BarArrays(times, prices, prices, prices, prices, np.full(6, np.nan)), 1, 9)
    assert cleaned.times.tolist() == [1, 3, 5]
    assert cleaned.close.tolist() == [1.0, 3.0, 5.0] and cleaned.volume.tolist() == [0.0, 0.0, 0.0]


def test_daily_gaps_are_missing_sessions_on_the_calendar():
    days = session_times(date(2020, 1, 2), date(2020, 1, 31), daily=True)
    kept = np.delete(days, [3, 4, 10])  # Jan 7, Jan 8 and Jan 16
    gaps = find_gaps(subscription(0, BarFrequency.DAY, kept), XNYS)
    assert [(from_ns(g.at_ns).date(), g.missing, g.sessions) for g in gaps] == [
        (date(2020, 1, 7), 2, True),
        (date(2020, 1, 16), 1, True),
    ]
    assert find_gaps(subscription(0, BarFrequency.DAY, days), XNYS) == []  # MLK day is a holiday, not a gap
