"""The storing service both imports and the generator go through."""

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest
from django.db import IntegrityError

from securities.bar_arrays import BarArrays
from securities.models import Bar, BarImport
from securities.services import bars_store
from tests.securities.factories import SecurityFactory

pytestmark = pytest.mark.django_db

START_NS = 1_510_324_200_000_000_000  # 2017-11-10 14:30 UTC


def arrays(open_, high, low, close, volume) -> BarArrays:
    count = len(open_)
    times = START_NS + np.arange(count, dtype=np.int64) * 60_000_000_000
    return BarArrays(times, *(np.asarray(values, dtype=np.float64) for values in (open_, high, low, close, volume)))


def expected(value: float, places: int) -> Decimal:
    # What a float means to the database: its 15 significant digits, then the column's scale.
    return Decimal(format(value, ".15g")).quantize(Decimal(1).scaleb(-places))


def test_values_keep_fifteen_significant_digits_at_the_column_scale():
    security = SecurityFactory()
    prices = [0.00000001, 0.0672, 0.999999999, 1.23456789012, 2580.25, 123456.12345678, 99999999999.99, 999999999999.5]
    volumes = [0.0, 1.5, 0.0000004, 1371330506.0, 12345678901234.5, 99999999999999999.0, 7.0, 0.0]
    bars_store(
        security=security, frequency="minute", bars=arrays(prices, prices, prices, prices, volumes), source="test"
    )
    rows = list(Bar.objects.filter(security=security).order_by("time").values_list("open", "volume"))
    assert rows == [(expected(price, 8), expected(volume, 6)) for price, volume in zip(prices, volumes, strict=True)]


def test_inconsistent_bars_are_refused_by_the_database_and_nothing_is_kept():
    security = SecurityFactory()
    bars = arrays([10, 10], [11, 9], [9, 9.5], [10.5, 9.6], [1, 1])  # the second high is below its open
    with pytest.raises(IntegrityError):
        bars_store(security=security, frequency="minute", bars=bars, source="test")
    assert not Bar.objects.exists() and not BarImport.objects.exists()


@pytest.mark.parametrize(
    ("bars", "message"),
    [
        (BarArrays(np.array([2, 1]) * 1_000_000_000, *([np.ones(2)] * 5)), "strictly increasing whole seconds"),
        (arrays([1], [1], [0], [1], [1]), "prices must be in"),
        (arrays([1], [1], [1], [1], [-1]), "volume in"),
        (BarArrays.empty(), "no bars to store"),
    ],
)
def test_arrays_the_columns_cannot_hold_are_refused(bars, message):
    with pytest.raises(ValueError, match=message):
        bars_store(security=SecurityFactory(), frequency="minute", bars=bars, source="test")


def test_the_record_says_what_was_stored():
    security = SecurityFactory()
    report = bars_store(
        security=security, frequency="minute", bars=arrays([1, 1], [2, 2], [1, 1], [2, 2], [5, 5]), source="x.csv"
    )
    record = BarImport.objects.get()
    assert (record.rows_imported, record.first_time, record.last_time) == (
        2,
        datetime(2017, 11, 10, 14, 30, tzinfo=UTC),
        datetime(2017, 11, 10, 14, 31, tzinfo=UTC),
    )
    assert report.bar_import == record and report.rows_replaced == 0


def test_progress_is_reported_up_to_the_last_bar():
    calls = []
    bars = arrays([1] * 3, [2] * 3, [1] * 3, [2] * 3, [5] * 3)
    bars_store(
        security=SecurityFactory(),
        frequency="minute",
        bars=bars,
        source="x.csv",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls and calls[-1] == (3, 3)
