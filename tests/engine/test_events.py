"""BarEvent keeps its open time in nanoseconds and makes the datetime when `time` is read; built
by hand (a strategy author's unit test) or by the engine, it behaves the same."""

import copy
import pickle
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from runs.engine.feed import to_ns
from strategies.sdk import AssetType, BarEvent, BarFrequency, Subscribe
from tests.engine.factories import SecurityInfoFactory, backtest, price_bars, session_times, utc

OPEN = datetime(2020, 1, 2, 14, 30, 0, 250_001, tzinfo=UTC)


def bar(time=OPEN, **changes) -> BarEvent:
    fields = dict(symbol="MSFT", asset_type=AssetType.EQUITY, frequency=BarFrequency.MINUTE, time=time,
                  open=1.0, high=2.0, low=0.5, close=1.5, volume=1000.0)
    return BarEvent(**{**fields, **changes})


def test_a_bar_built_from_a_datetime_gives_it_back_and_carries_it_in_nanoseconds():
    event = bar()
    assert event.time == OPEN and event.time.tzinfo is UTC
    assert event.time_ns == to_ns(OPEN)
    assert (event.symbol, event.frequency, event.close) == ("MSFT", BarFrequency.MINUTE, 1.5)
    assert tuple(event)[3] == event.time_ns  # unpacking gives the nanoseconds
    with pytest.raises(AttributeError):
        event.time = OPEN


def test_equality_copies_and_replacements():
    event = bar()
    new_york = timezone(timedelta(hours=-5))
    assert bar(time=OPEN.astimezone(new_york)) == event  # the same moment
    assert hash(bar()) == hash(event) and bar(time=OPEN + timedelta(minutes=1)) != event
    assert copy.copy(event) == event == copy.deepcopy(event) == pickle.loads(pickle.dumps(event))
    assert BarEvent(**event._asdict()) == event and event._asdict()["time"] == OPEN
    later = event._replace(time=OPEN + timedelta(hours=1), close=3.0)
    assert (later.time, later.close, later.symbol) == (OPEN + timedelta(hours=1), 3.0, "MSFT")
    assert type(later) is BarEvent and event._replace(volume=5.0).time == OPEN
    assert "time=datetime.datetime(2020, 1, 2, 14, 30, 0, 250001, tzinfo=datetime.timezone.utc)" in repr(event)


def test_a_naive_time_is_taken_as_utc_and_a_non_datetime_is_refused():
    assert bar(time=OPEN.replace(tzinfo=None)).time == OPEN
    assert bar(time=datetime(1969, 12, 31, 23, 59, 59, 5)).time == datetime(1969, 12, 31, 23, 59, 59, 5, tzinfo=UTC)
    with pytest.raises(TypeError, match="time must be a datetime"):
        bar(time=to_ns(OPEN))


def test_the_engine_delivers_bars_whose_time_is_their_open():
    minutes = session_times(date(2020, 1, 2), date(2020, 1, 2))[:3]
    msft = SecurityInfoFactory.build(symbol="MSFT")
    config = {"subscribe": [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)]}
    _, _, strategy = backtest(securities=[msft], bars={("MSFT", "equity", "minute"): price_bars(minutes, [(10.0, 11.0, 9.0, 10.5)] * 3)},
                              config=config, start=utc(2020, 1, 2), end=utc(2020, 1, 3))
    events = [event for event, _ in strategy.bars]
    assert [event.time for event in events] == [utc(2020, 1, 2, 14, 30), utc(2020, 1, 2, 14, 31), utc(2020, 1, 2, 14, 32)]
    assert events[0] == BarEvent("MSFT", AssetType.EQUITY, BarFrequency.MINUTE, utc(2020, 1, 2, 14, 30), 10.0, 11.0, 9.0, 10.5, 10_000.0)
