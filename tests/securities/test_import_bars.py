import gzip
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from securities.csv_bars import BarFileError
from securities.models import Bar, BarImport
from securities.services import bars_import
from tests.securities.conftest import DATA_DIR
from tests.securities.factories import FutureFactory, SecurityFactory
from tests.strategies.factories import UserFactory

pytestmark = pytest.mark.django_db

DAILY = """
date,open,high,low,close,volume
2017-11-06,84.2,84.7,84.0,84.47,19852151
2017-11-07,84.77,84.9,83.93,84.26,17939993
2017-11-08,84.14,84.61,83.8,84.56,18034134
2017-11-09,84.11,84.27,82.9,84.09,21175384
2017-11-10,83.79,84.095,83.23,83.87,19396301
"""


def import_bars(path, *args, symbol="MSFT", asset_type="equity", frequency="day"):
    out, err = StringIO(), StringIO()
    call_command(
        "import_bars",
        str(path),
        "--symbol",
        symbol,
        "--asset-type",
        asset_type,
        "--frequency",
        frequency,
        *args,
        stdout=out,
        stderr=err,
    )
    return out.getvalue(), err.getvalue()


def stored(security, frequency="day"):
    return list(
        Bar.objects.filter(security=security, frequency=frequency)
        .order_by("time")
        .values_list("time", "open", "high", "low", "close", "volume")
    )


@pytest.fixture
def msft():
    return SecurityFactory(symbol="MSFT", name="Microsoft")


def test_the_vendored_gzip_file_imports_every_bar_with_provenance(msft):
    out, err = import_bars(DATA_DIR / "MSFT_1d.csv.gz")
    assert out.startswith(
        "7,983 day bars of MSFT (equity) 1986-03-13 14:30 .. 2017-11-10 14:30 UTC: 0 replaced, 0 rejected, in "
    )
    assert err == ""
    assert Bar.objects.filter(security=msft, frequency="day").count() == 7983
    last = Bar.objects.filter(security=msft).latest("time")
    assert (last.time, last.open, last.high, last.low, last.close, last.volume) == (
        datetime(2017, 11, 10, 14, 30, tzinfo=UTC),
        Decimal("83.79"),
        Decimal("84.095"),
        Decimal("83.23"),
        Decimal("83.87"),
        Decimal("19396301"),
    )
    record = BarImport.objects.get()
    assert (record.security, record.frequency, record.source, record.synthetic) == (
        msft,
        "day",
        "MSFT_1d.csv.gz",
        False,
    )
    assert (record.rows_imported, record.rows_rejected) == (7983, 0)
    assert (record.first_time, record.last_time) == (
        datetime(1986, 3, 13, 14, 30, tzinfo=UTC),
        datetime(2017, 11, 10, 14, 30, tzinfo=UTC),
    )


def test_a_plain_csv_stores_exact_values(msft, write_csv):
    path = write_csv(
        """
        DateTime,Open,High,Low,Close,Volume
        2017-11-10 09:30:00,0.0672,1248.810059,0.00000001,0.07533,1371330506.5
        2017-11-10 09:31:00,123456.12345678,99999999999.99,123456.12345678,123456.12345678,0
        """
    )
    import_bars(path, frequency="minute")
    assert stored(msft, "minute") == [
        (
            datetime(2017, 11, 10, 14, 30, tzinfo=UTC),
            Decimal("0.0672"),
            Decimal("1248.810059"),
            Decimal("0.00000001"),
            Decimal("0.07533"),
            Decimal("1371330506.5"),
        ),
        (
            datetime(2017, 11, 10, 14, 31, tzinfo=UTC),
            Decimal("123456.12345678"),
            Decimal("99999999999.99"),
            Decimal("123456.12345678"),
            Decimal("123456.12345678"),
            Decimal("0"),
        ),
    ]


def test_a_bad_file_is_rejected_whole_with_line_numbers(msft, write_csv):
    path = write_csv(
        DAILY + "2017-11-13,84.1,83.0,83.9,84.5,100\n2017-11-14,84.1,nope,83.9,84.5,100\n2017-11-14,84,85,83,84,1\n"
    )
    with pytest.raises(CommandError) as raised:
        import_bars(path)
    assert str(raised.value) == (
        "bars.csv: 2 of 8 rows are bad, so nothing was imported; fix them, or use --skip-bad to import the 6 good rows"
    )
    assert not Bar.objects.exists() and not BarImport.objects.exists()


def test_the_command_prints_the_bad_lines(msft, write_csv):
    path = write_csv(DAILY + "2017-11-13,84.1,83.0,83.9,84.5,100\n2017-11-10,84,85,83,84,1\n")
    err = StringIO()
    with pytest.raises(CommandError):
        call_command(
            "import_bars", str(path), "--symbol", "MSFT", "--asset-type", "equity", "--frequency", "day", stderr=err
        )
    assert err.getvalue().splitlines() == [
        "line 7: high 83.0 is below max(open, close, low) = 84.5",
        "line 8: time 2017-11-10 14:30:00 UTC repeats line 6",
    ]


def test_skip_bad_imports_the_good_rows_and_reports_the_rest(msft, write_csv):
    path = write_csv(DAILY + "2017-11-13,84.1,83.0,83.9,84.5,100\n")
    out, err = import_bars(path, "--skip-bad")
    assert err.splitlines() == ["line 7: high 83.0 is below max(open, close, low) = 84.5"]
    assert "5 day bars of MSFT (equity) 2017-11-06 14:30 .. 2017-11-10 14:30 UTC: 0 replaced, 1 rejected" in out
    assert len(stored(msft)) == 5
    assert BarImport.objects.get().rows_rejected == 1


def test_a_file_with_no_good_rows_is_refused_even_with_skip_bad(msft, write_csv):
    with pytest.raises(CommandError, match="no good rows to import"):
        import_bars(write_csv("date,open,high,low,close\n2017-11-13,84.1,83.0,83.9,84.5\n"), "--skip-bad")


def test_reimporting_an_overlapping_range_replaces_it(msft, write_csv):
    import_bars(write_csv(DAILY, "first.csv"))
    second = write_csv(
        """
        date,open,high,low,close,volume
        2017-11-08,90,91,89,90.5,1
        2017-11-10,90,91,89,90.5,1
        2017-11-13,90,91,89,90.5,1
        """,
        "second.csv",
    )
    out, _ = import_bars(second)
    assert "3 day bars of MSFT (equity) 2017-11-08 14:30 .. 2017-11-13 14:30 UTC: 3 replaced" in out
    closes = [(time.day, close) for time, *_, close, _ in stored(msft)]
    # 2017-11-09 fell inside the new file's range but not in it: replaced means removed.
    assert closes == [
        (6, Decimal("84.47")),
        (7, Decimal("84.26")),
        (8, Decimal("90.5")),
        (10, Decimal("90.5")),
        (13, Decimal("90.5")),
    ]
    assert BarImport.objects.count() == 2


def test_an_unknown_security_names_it_and_the_fix(write_csv):
    SecurityFactory(symbol="MSFT", name="Microsoft")
    with pytest.raises(CommandError) as raised:
        import_bars(write_csv(DAILY), symbol="MSFTT")
    assert str(raised.value) == (
        "no security MSFTT (equity) in the security master; did you mean MSFT? If not, "
        "add it first with `manage.py import_securities FILE.csv`"
    )
    with pytest.raises(CommandError, match=r"no security MSFT \(future\) in the security master; it exists as equity"):
        import_bars(write_csv(DAILY), asset_type="future")


def test_futures_dates_are_cme_sessions_and_the_synthetic_flag_is_recorded(write_csv):
    es = FutureFactory(symbol="ES", name="E-mini S&P 500")
    import_bars(
        write_csv("date,open,high,low,close\n2017-11-10,2580,2590,2570,2585"),
        "--synthetic",
        symbol="ES",
        asset_type="future",
    )
    assert [time for time, *_ in stored(es)] == [datetime(2017, 11, 9, 23, 0, tzinfo=UTC)]
    assert BarImport.objects.get().synthetic is True


def test_the_timezone_option_reads_naive_times_in_that_zone(msft, write_csv):
    import_bars(
        write_csv("datetime,open,high,low,close\n2017-11-10 14:30:00,1,2,1,2"), "--timezone", "UTC", frequency="minute"
    )
    assert [time for time, *_ in stored(msft, "minute")] == [datetime(2017, 11, 10, 14, 30, tzinfo=UTC)]


def test_the_service_accepts_file_objects_and_records_the_user(msft):
    user = UserFactory()
    upload = gzip.open(DATA_DIR / "SPX_1d.csv.gz")  # any file object; the name is the source
    report = bars_import(
        file=upload, symbol="msft", asset_type="equity", frequency="day", user=user, source="upload.csv"
    )
    assert (report.rows_imported, report.bar_import.imported_by, report.bar_import.source) == (5031, user, "upload.csv")


def test_the_service_refuses_unknown_frequencies(msft):
    with pytest.raises(BarFileError, match="frequency 'weekly' is not one of second, minute, hour, day"):
        bars_import(file=DATA_DIR / "MSFT_1d.csv.gz", symbol="MSFT", asset_type="equity", frequency="weekly")
