"""The packed bar block cache behind `bars_as_arrays` on PostgreSQL: equal to the bar rows to the
byte, reused while the series is unchanged, and never served after a change (triggers on the bar
table bump the series' revision)."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.db import connection, connections, transaction

from securities import selectors
from securities.bar_arrays import BarArrays
from securities.models import Bar, BarBlock, BarSeries, Security
from securities.selectors import bars_as_arrays
from securities.services import bars_store
from tests.securities.factories import BarFactory, SecurityFactory

COLUMNS = ("times", "open", "high", "low", "close", "volume")
NS_PER_MINUTE = 60_000_000_000


@pytest.fixture
def needs_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("the bar block cache exists only on PostgreSQL (set DATABASE_URL)")


def postgres_only(test):
    return pytest.mark.postgres(pytest.mark.usefixtures("needs_postgres")(test))


def ns(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def synthetic(first: datetime, count: int, step: timedelta, *, seed: int = 1) -> BarArrays:
    """`count` bars `step` apart with prices of many decimals (what float8 makes of NUMERIC)."""
    generator = np.random.default_rng(seed)
    times = ns(first) + np.arange(count, dtype=np.int64) * (step // timedelta(microseconds=1) * 1000)
    open_ = np.round(100 + np.cumsum(generator.normal(0, 0.37, count)), 8)
    close = np.round(open_ + generator.normal(0, 0.11, count), 8)
    high = np.round(np.maximum(open_, close) + generator.uniform(0.00000001, 0.3, count), 8)
    low = np.round(np.minimum(open_, close) - generator.uniform(0.00000001, 0.3, count), 8)
    volume = np.round(generator.uniform(0, 1e6, count), 6)
    return BarArrays(times, open_, high, low, close, volume)


def rows(security, frequency: str, start: datetime, end: datetime) -> BarArrays:
    return selectors._bar_rows_as_arrays(security_id=security.pk, frequency=frequency, start=start, end=end)


def assert_same(cached: BarArrays, expected: BarArrays) -> None:
    for name in COLUMNS:
        got, want = getattr(cached, name), getattr(expected, name)
        assert got.dtype == want.dtype, name
        assert np.array_equal(got, want), name
        assert got.tobytes() == want.tobytes(), name


def blocks_of(security) -> list[tuple]:
    return list(
        BarBlock.objects.filter(security=security)
        .order_by("frequency", "period_start")
        .values_list("id", "frequency", "period_start", "revision", "points")
    )


def revision_of(security, frequency: str) -> int:
    return (
        BarSeries.objects.filter(security=security, frequency=frequency).values_list("revision", flat=True).first() or 0
    )


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# Minute bars every 97 minutes from mid-November 2019 to mid-February 2020 (month and year
# boundaries), with nothing stored in December 2019; daily bars 2018-06 .. 2021-06, none in 2019.
MINUTE_FIRST, MINUTE_COUNT, MINUTE_STEP = utc(2019, 11, 14, 9, 31), 1400, timedelta(minutes=97)
DAY_FIRST, DAY_COUNT, DAY_STEP = utc(2018, 6, 4), 1100, timedelta(days=1)


@pytest.fixture
def stored(db):
    """A security with the minute and day series above (December 2019 and 2019 left empty)."""
    security = SecurityFactory(symbol="BLOCKS")
    for frequency, first, count, step, gap_start in (
        ("minute", MINUTE_FIRST, MINUTE_COUNT, MINUTE_STEP, utc(2019, 12, 1)),
        ("day", DAY_FIRST, DAY_COUNT, DAY_STEP, utc(2019, 1, 1)),
    ):
        bars = synthetic(first, count, step)
        for part in (bars.times < ns(gap_start), bars.times >= ns(utc(2020, 1, 1))):
            bars_store(security=security, frequency=frequency, bars=bars.take(part), source="test")
    return security


WINDOWS = {
    "minute": {
        "inside one month": (utc(2019, 11, 20, 3, 7), utc(2019, 11, 27, 18)),
        "across the year (an empty month between)": (utc(2019, 11, 25), utc(2020, 1, 9, 12, 1)),
        "across a month boundary": (utc(2020, 1, 28), utc(2020, 2, 3, 0, 0, 0, 1)),
        "no bars (the empty month)": (utc(2019, 12, 3), utc(2019, 12, 29)),
        "partial first and last months": (utc(2019, 11, 14, 9, 31), utc(2020, 2, 14)),
        "exactly on a bar at both ends": (MINUTE_FIRST + 10 * MINUTE_STEP, MINUTE_FIRST + 20 * MINUTE_STEP),
        "everything, centuries wide": (utc(1900, 1, 1), utc(2100, 1, 1)),
        "before any bar": (utc(2001, 1, 1), utc(2019, 11, 14, 9, 31)),
    },
    "day": {
        "inside one year": (utc(2018, 7, 3), utc(2018, 11, 2, 12)),
        "across a year boundary": (utc(2018, 12, 20), utc(2020, 1, 15)),
        "no bars (the empty year)": (utc(2019, 2, 1), utc(2019, 12, 31)),
        "partial first and last years": (utc(2018, 6, 4), utc(2021, 5, 1)),
        "everything, centuries wide": (utc(1900, 1, 1), utc(2100, 1, 1)),
    },
}


@pytest.mark.parametrize(
    ("frequency", "window"), [(frequency, name) for frequency, windows in WINDOWS.items() for name in windows]
)
@postgres_only
def test_cached_reads_equal_row_reads(stored, frequency, window):
    start, end = WINDOWS[frequency][window]
    expected = rows(stored, frequency, start, end)

    first = bars_as_arrays(security=stored, frequency=frequency, start=start, end=end)
    second = bars_as_arrays(security=stored, frequency=frequency, start=start, end=end)

    assert_same(first, expected)
    assert_same(second, expected)
    assert np.all(np.diff(second.times) > 0)
    assert second.times.flags.writeable and second.close.flags.owndata  # as the row path gives them


@postgres_only
def test_every_window_agrees_with_the_rows_after_the_cache_is_full(stored):
    everything = (utc(1900, 1, 1), utc(2100, 1, 1))
    for frequency in ("minute", "day"):
        bars_as_arrays(security=stored, frequency=frequency, start=everything[0], end=everything[1])
    for frequency, windows in WINDOWS.items():
        for start, end in windows.values():
            assert_same(
                bars_as_arrays(security=stored, frequency=frequency, start=start, end=end),
                rows(stored, frequency, start, end),
            )


@postgres_only
def test_a_second_read_reuses_the_blocks_and_empty_periods_are_cached_too(stored):
    start, end = utc(2019, 11, 1), utc(2020, 3, 1)
    first = bars_as_arrays(security=stored, frequency="minute", start=start, end=end)
    blocks = blocks_of(stored)

    second = bars_as_arrays(security=stored, frequency="minute", start=start, end=end)

    assert blocks_of(stored) == blocks
    assert [(period_start, points) for _, _, period_start, _, points in blocks] == [
        (utc(2019, 11, 1), int(np.sum(first.times < ns(utc(2019, 12, 1))))),
        (utc(2019, 12, 1), 0),
        (utc(2020, 1, 1), int(np.sum((first.times >= ns(utc(2020, 1, 1))) & (first.times < ns(utc(2020, 2, 1)))))),
        (utc(2020, 2, 1), int(np.sum(first.times >= ns(utc(2020, 2, 1))))),
    ]
    assert {revision for *_, revision, _ in blocks} == {revision_of(stored, "minute")}
    assert_same(second, first)


@postgres_only
def test_a_block_holds_its_period_as_packed_little_endian_columns(stored):
    bars_as_arrays(security=stored, frequency="day", start=utc(2020, 3, 1), end=utc(2020, 3, 2))
    block = BarBlock.objects.get(security=stored, frequency="day")
    expected = rows(stored, "day", utc(2020, 1, 1), utc(2021, 1, 1))

    assert block.period_start == utc(2020, 1, 1) and block.points == len(expected) == 366
    assert (block.first_time, block.last_time) == (utc(2020, 1, 1), utc(2020, 12, 31))
    assert np.array_equal(np.frombuffer(bytes(block.times), dtype="<i8"), expected.times)
    assert np.array_equal(np.frombuffer(bytes(block.close), dtype="<f8"), expected.close)


@postgres_only
@pytest.mark.parametrize(
    ("frequency", "first", "step", "period_starts"),
    [
        ("second", utc(2021, 3, 1, 23, 59, 0), timedelta(seconds=7), [utc(2021, 3, 1), utc(2021, 3, 2)]),
        ("hour", utc(2020, 12, 30), timedelta(hours=5), [utc(2020, 1, 1), utc(2021, 1, 1)]),
    ],
)
def test_second_bars_are_cached_by_day_and_hour_bars_by_year(db, frequency, first, step, period_starts):
    security = SecurityFactory()
    bars_store(security=security, frequency=frequency, bars=synthetic(first, 20, step), source="test")
    start, end = first + step, first + 18 * step

    assert_same(
        bars_as_arrays(security=security, frequency=frequency, start=start, end=end),
        rows(security, frequency, start, end),
    )
    assert [period_start for _, _, period_start, _, _ in blocks_of(security)] == period_starts


# --- Invalidation --------------------------------------------------------------------------

WINDOW = (utc(2019, 11, 1), utc(2020, 3, 1))
CHANGED_TIME = MINUTE_FIRST + 3 * MINUTE_STEP


def read(security) -> BarArrays:
    return bars_as_arrays(security=security, frequency="minute", start=WINDOW[0], end=WINDOW[1])


def close_at(bars: BarArrays, moment: datetime) -> float:
    return float(bars.close[np.searchsorted(bars.times, ns(moment))])


def assert_reads_the_rows(security) -> BarArrays:
    fresh = read(security)
    assert_same(fresh, rows(security, "minute", *WINDOW))
    return fresh


@postgres_only
def test_storing_bars_over_a_range_invalidates_the_blocks(stored):
    before = read(stored)
    revision = revision_of(stored, "minute")
    replacement = synthetic(CHANGED_TIME, 5, MINUTE_STEP, seed=99)

    bars_store(security=stored, frequency="minute", bars=replacement, source="fix")

    assert revision_of(stored, "minute") == revision + 2  # the delete and the insert
    after = assert_reads_the_rows(stored)
    assert close_at(after, CHANGED_TIME) == float(replacement.close[0]) != close_at(before, CHANGED_TIME)


@postgres_only
def test_a_queryset_update_invalidates_the_blocks(stored):
    read(stored)
    Bar.objects.filter(security=stored, frequency="minute", time=CHANGED_TIME).update(
        close=Decimal("101.23456789"), high=Decimal("999")
    )
    assert close_at(assert_reads_the_rows(stored), CHANGED_TIME) == 101.23456789


@postgres_only
def test_a_raw_sql_update_invalidates_the_blocks(stored):
    read(stored)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE securities_bar SET high = 500, close = 444.5 WHERE security_id = %s AND frequency = 'minute' AND time = %s",
            [stored.pk, CHANGED_TIME],
        )
    assert close_at(assert_reads_the_rows(stored), CHANGED_TIME) == 444.5


@postgres_only
def test_deleting_bars_invalidates_the_blocks(stored):
    before = read(stored)
    Bar.objects.filter(security=stored, frequency="minute", time__gte=utc(2020, 2, 1)).delete()
    after = assert_reads_the_rows(stored)
    assert len(after) < len(before) and after.times[-1] < ns(utc(2020, 2, 1))


@postgres_only
def test_saving_one_bar_through_the_orm_invalidates_the_blocks(stored):
    read(stored)
    bar = Bar.objects.get(security=stored, frequency="minute", time=CHANGED_TIME)
    bar.close = bar.low
    bar.save()  # as the admin's change form does
    assert close_at(assert_reads_the_rows(stored), CHANGED_TIME) == float(bar.low)


@postgres_only
def test_a_bar_moved_to_another_series_invalidates_both(stored):
    other = SecurityFactory()
    read(stored)
    bars_as_arrays(security=other, frequency="minute", start=WINDOW[0], end=WINDOW[1])  # caches "nothing"
    Bar.objects.filter(security=stored, frequency="minute", time=CHANGED_TIME).update(security=other)

    assert ns(CHANGED_TIME) not in assert_reads_the_rows(stored).times
    moved = bars_as_arrays(security=other, frequency="minute", start=WINDOW[0], end=WINDOW[1])
    assert moved.times.tolist() == [ns(CHANGED_TIME)]


@postgres_only
def test_the_cache_of_one_series_survives_changes_to_another(stored):
    read(stored)
    blocks = blocks_of(stored)
    bars_store(security=stored, frequency="day", bars=synthetic(utc(2022, 1, 3), 3, DAY_STEP), source="more")
    BarFactory(security=SecurityFactory(), time=CHANGED_TIME)
    assert_same(read(stored), rows(stored, "minute", *WINDOW))
    assert blocks_of(stored) == blocks


# --- Transactions and races (committed data) -----------------------------------------------


def in_another_connection(work) -> None:
    """Run `work` in a thread, so on its own connection, committed when it returns."""
    errors = []

    def run():
        try:
            work()
        except Exception as exc:  # re-raised in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive() and not errors, errors


def committed_security() -> Security:
    security = SecurityFactory(symbol="RACE")
    bars_store(security=security, frequency="minute", bars=synthetic(MINUTE_FIRST, 300, MINUTE_STEP), source="test")
    return security


@pytest.mark.django_db(transaction=True)
@postgres_only
def test_a_block_built_before_a_committed_change_is_never_served():
    security = committed_security()
    # A reader reads the revision and the rows ...
    with selectors._binary_cursor() as cursor:
        revision, _ = selectors._current_blocks(
            cursor, security_id=security.pk, frequency="minute", first_period=WINDOW[0], end=WINDOW[1]
        )
    old = selectors._blocks_build(
        security_id=security.pk, frequency="minute", period_indexes=[2019 * 12 + 10, 2019 * 12 + 11], unit="month"
    )
    # ... another transaction changes a bar and commits ...
    in_another_connection(
        lambda: Bar.objects.filter(security=security, frequency="minute", time=CHANGED_TIME).update(
            close=Decimal("77.5"), low=Decimal("1")
        )
    )
    # ... and the reader stores what it read, tagged with the revision it read.
    with selectors._binary_cursor() as cursor:
        selectors._blocks_store(cursor, security_id=security.pk, frequency="minute", revision=revision, blocks=old)
    assert BarBlock.objects.filter(security=security, revision=revision).count() == 2

    assert close_at(read(security), CHANGED_TIME) == 77.5
    assert_reads_the_rows(security)


@pytest.mark.django_db(transaction=True)
@postgres_only
def test_a_change_committed_while_blocks_are_built_answers_from_the_rows_and_stores_nothing(monkeypatch):
    security = committed_security()
    build = selectors._blocks_build

    def build_then_change(**kwargs):
        blocks = build(**kwargs)
        in_another_connection(
            lambda: Bar.objects.filter(security=security, frequency="minute", time=CHANGED_TIME).update(
                close=Decimal("66.25"), low=Decimal("1")
            )
        )
        return blocks

    monkeypatch.setattr(selectors, "_blocks_build", build_then_change)
    assert close_at(read(security), CHANGED_TIME) == 66.25
    assert not BarBlock.objects.filter(security=security).exists()


@pytest.mark.django_db(transaction=True)
@postgres_only
def test_truncating_the_bar_table_invalidates_every_block():
    security = committed_security()
    # A series last written before the triggers existed has no revision row: revision 0.
    BarSeries.objects.all().delete()
    assert len(read(security)) == 300 and BarBlock.objects.filter(revision=0).exists()

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE securities_bar")

    assert not BarBlock.objects.exists()
    assert len(read(security)) == 0


@pytest.mark.django_db(transaction=True)
@postgres_only
def test_a_read_only_transaction_reads_the_rows_without_storing_blocks():
    security = committed_security()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
        bars = read(security)
        assert Security.objects.filter(pk=security.pk).exists()  # the transaction still works
    assert len(bars) == 300
    assert_same(bars, rows(security, "minute", *WINDOW))
    assert not BarBlock.objects.exists()


@pytest.mark.django_db(transaction=True)
@postgres_only
def test_deleting_a_security_deletes_its_bars_series_and_blocks():
    security = committed_security()
    read(security)
    assert BarSeries.objects.filter(security=security).exists() and BarBlock.objects.filter(security=security).exists()

    security.delete()  # the bars' delete trigger must not leave a series row behind

    assert not BarSeries.objects.exists() and not BarBlock.objects.exists() and not Bar.objects.exists()


# --- Admin ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_lists_blocks_read_only(admin_client):
    security = SecurityFactory(symbol="ADMINBLK")
    empty = b""
    block = BarBlock.objects.create(
        security=security, frequency="minute", period_start=utc(2020, 1, 1), revision=3, points=0,
        times=empty, open=empty, high=empty, low=empty, close=empty, volume=empty,
    )  # fmt: skip

    page = admin_client.get("/admin/securities/barblock/")
    assert page.status_code == 200 and "ADMINBLK" in page.content.decode()
    assert admin_client.get("/admin/securities/barblock/add/").status_code == 403
    assert admin_client.post(f"/admin/securities/barblock/{block.pk}/change/", {"points": "5"}).status_code == 403
    block.refresh_from_db()
    assert block.points == 0
