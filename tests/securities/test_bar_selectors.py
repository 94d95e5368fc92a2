from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from securities.selectors import bar_frequencies_for, bars_as_arrays, bars_available
from securities.services import bars_import
from tests.securities.conftest import DATA_DIR
from tests.securities.factories import BarFactory, SecurityFactory

pytestmark = pytest.mark.django_db

START = datetime(2017, 11, 10, 14, 30, tzinfo=UTC)


def ns(moment: datetime) -> int:
    return int(pd.Timestamp(moment).value)


def test_bars_come_back_as_arrays_in_the_half_open_range_oldest_first():
    security = SecurityFactory()
    # Created newest first, so the order of the result is the selector's doing.
    bars = [BarFactory(security=security, time=START + timedelta(minutes=minute)) for minute in (4, 3, 2, 1, 0)]
    BarFactory(security=security, frequency="day", time=START + timedelta(minutes=2))  # another frequency
    BarFactory(security=SecurityFactory(), time=START + timedelta(minutes=2))  # another security

    arrays = bars_as_arrays(
        security=security, frequency="minute", start=START + timedelta(minutes=1), end=START + timedelta(minutes=4)
    )

    expected = sorted(bars, key=lambda bar: bar.time)[1:4]
    assert len(arrays) == 3
    assert arrays.times.dtype == np.int64 and arrays.close.dtype == np.float64
    assert arrays.times.tolist() == [ns(bar.time) for bar in expected]
    for name in ("open", "high", "low", "close", "volume"):
        assert getattr(arrays, name).tolist() == [float(getattr(bar, name)) for bar in expected]


def test_an_id_works_as_well_as_a_security_and_an_empty_range_is_empty():
    bar = BarFactory(time=START)
    assert (
        len(bars_as_arrays(security=bar.security_id, frequency="minute", start=START, end=START + timedelta(minutes=1)))
        == 1
    )
    empty = bars_as_arrays(security=bar.security_id, frequency="minute", start=START - timedelta(days=1), end=START)
    assert len(empty) == 0 and empty.times.dtype == np.int64


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        bars_as_arrays(security=1, frequency="day", start=datetime(2017, 1, 1), end=datetime(2018, 1, 1))


def test_imported_bars_read_back_as_the_file_had_them():
    security = SecurityFactory(symbol="MSFT")
    bars_import(file=DATA_DIR / "MSFT_1d.csv.gz", symbol="MSFT", asset_type="equity", frequency="day")
    frame = pd.read_csv(DATA_DIR / "MSFT_1d.csv.gz")
    arrays = bars_as_arrays(
        security=security, frequency="day", start=datetime(1900, 1, 1, tzinfo=UTC), end=datetime(2100, 1, 1, tzinfo=UTC)
    )
    assert len(arrays) == len(frame) == 7983
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(getattr(arrays, name), frame[name].to_numpy(dtype=float), rtol=1e-12)
    assert np.all(np.diff(arrays.times) > 0)
    assert arrays.times[-1] == ns(datetime(2017, 11, 10, 14, 30, tzinfo=UTC))


def test_availability_and_frequencies():
    security = SecurityFactory()
    assert bars_available(security=security, frequency="minute") == (None, None, 0)
    assert bar_frequencies_for(security) == []
    for minute in range(3):
        BarFactory(security=security, time=START + timedelta(minutes=minute))
    BarFactory(security=security, frequency="day", time=START)
    assert bars_available(security=security, frequency="minute") == (START, START + timedelta(minutes=2), 3)
    assert bar_frequencies_for(security.pk) == ["minute", "day"]
