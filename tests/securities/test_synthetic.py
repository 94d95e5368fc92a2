from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from securities.models import Bar, BarImport
from securities.services import bars_generate_synthetic
from securities.synthetic import synthetic_minute_bars
from tests.securities.factories import FutureFactory, SecurityFactory

NEW_YORK = ZoneInfo("America/New_York")


def local_times(bars, zone=NEW_YORK) -> pd.DatetimeIndex:
    return pd.to_datetime(bars.times, utc=True).tz_convert(zone)


def generate(**options):
    settings = {
        "symbol": "AAPL",
        "start_date": "2017-11-20",
        "end_date": "2017-12-29",
        "seed": 7,
        "start_price": 170.0,
    } | options
    return synthetic_minute_bars(**settings)


def test_the_same_seed_gives_the_same_bars_and_another_seed_other_bars():
    first, again = generate(), generate()
    for name in ("times", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.close, generate(seed=8).close)
    assert not np.array_equal(first.close, generate(symbol="NVDA").close)


def test_minute_bars_follow_the_exchange_sessions():
    bars = generate()
    times = local_times(bars)
    per_day = pd.Series(times.time, index=times.date).groupby(level=0).agg(["count", "min", "max"])
    assert date(2017, 12, 25) not in per_day.index  # Christmas
    assert date(2017, 11, 23) not in per_day.index  # Thanksgiving
    assert date(2017, 11, 25) not in per_day.index  # a Saturday
    assert per_day.loc[date(2017, 11, 24)].tolist() == [210, time(9, 30), time(12, 59)]  # early close at 13:00
    assert per_day.loc[date(2017, 11, 27)].tolist() == [390, time(9, 30), time(15, 59)]
    assert np.all(np.diff(bars.times) > 0)


def test_bars_are_consistent_and_on_the_tick():
    bars = generate(tick_size=0.05)
    assert np.all(bars.high >= np.maximum(bars.open, bars.close))
    assert np.all(bars.low <= np.minimum(bars.open, bars.close))
    assert np.all(bars.low > 0)
    for prices in (bars.open, bars.high, bars.low, bars.close):
        np.testing.assert_allclose(prices / 0.05, np.round(prices / 0.05), atol=1e-6)
    assert np.all(bars.volume >= 0) and np.array_equal(bars.volume, np.round(bars.volume))
    assert bars.volume.sum() > 0


def test_hourly_and_daily_bars_sit_on_the_session_grid():
    hourly = local_times(generate(frequency="hour", start_date="2017-11-24", end_date="2017-11-27"))
    assert [moment.strftime("%d %H:%M") for moment in hourly] == [
        "24 09:30", "24 10:30", "24 11:30", "24 12:30",
        "27 09:30", "27 10:30", "27 11:30", "27 12:30", "27 13:30", "27 14:30", "27 15:30",
    ]  # fmt: skip
    daily = generate(frequency="day")
    assert len(daily) == 28  # XNYS sessions from 2017-11-20 to 2017-12-29
    assert set(local_times(daily).time) == {time(9, 30)}


def test_futures_use_the_cme_calendar():
    # exchange_calendars' CMES session runs 17:00 to 17:00 Chicago time, opening the evening before.
    bars = generate(
        symbol="ES", calendar="CMES", start_date="2017-11-27", end_date="2017-11-27", tick_size=0.25, start_price=2600
    )
    times = local_times(bars, ZoneInfo("America/Chicago"))
    assert (len(bars), str(times[0]), str(times[-1])) == (
        1440,
        "2017-11-26 17:00:00-06:00",
        "2017-11-27 16:59:00-06:00",
    )


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="frequency 'tick'"):
        generate(frequency="tick")
    with pytest.raises(ValueError, match="before start_date"):
        generate(start_date="2017-12-01", end_date="2017-11-01")
    assert len(generate(start_date="2017-12-25", end_date="2017-12-25")) == 0


@pytest.mark.django_db
def test_generated_bars_are_stored_and_labelled_synthetic():
    security = SecurityFactory(symbol="AAPL", tick_size="0.01")
    report = bars_generate_synthetic(
        security=security, frequency="minute", start_date="2017-11-24", end_date="2017-11-27", seed=11, start_price=170
    )
    assert report.rows_imported == Bar.objects.filter(security=security, frequency="minute").count() == 210 + 390
    record = BarImport.objects.get()
    assert record.synthetic and record.source.startswith("synthetic XNYS random walk: seed 11")
    assert (record.first_time, record.last_time) == (
        datetime(2017, 11, 24, 14, 30, tzinfo=UTC),
        datetime(2017, 11, 27, 20, 59, tzinfo=UTC),
    )
    assert "synthetic bars" in report.summary()
    again = bars_generate_synthetic(
        security=security, frequency="minute", start_date="2017-11-24", end_date="2017-11-27", seed=11, start_price=170
    )
    assert again.rows_replaced == 600 and Bar.objects.filter(security=security).count() == 600


@pytest.mark.django_db
def test_futures_are_generated_on_their_tick_along_cme_sessions():
    es = FutureFactory(symbol="ES", tick_size="0.25")
    bars_generate_synthetic(
        security=es, frequency="hour", start_date="2017-11-27", end_date="2017-11-27", seed=3, start_price=2600
    )
    stored = list(Bar.objects.filter(security=es).order_by("time"))
    assert stored[0].time == datetime(2017, 11, 26, 23, 0, tzinfo=UTC) and len(stored) == 24
    assert all(bar.close % 1 in (0, 0.25, 0.5, 0.75) for bar in stored)
