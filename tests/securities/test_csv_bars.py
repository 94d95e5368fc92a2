"""The bar-file parser alone (no database)."""

import gzip
import io
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from securities.csv_bars import BarFileError, parse_bars_csv
from tests.securities.conftest import DATA_DIR


def utc(times) -> list[datetime]:
    return [timestamp.to_pydatetime() for timestamp in pd.to_datetime(times, utc=True)]


def parse(path, frequency="day", calendar_name="XNYS", **options):
    return parse_bars_csv(path, calendar_name=calendar_name, frequency=frequency, **options)


def test_the_vendored_msft_file_parses_whole():
    parsed = parse(DATA_DIR / "MSFT_1d.csv.gz")
    assert (parsed.rows_read, len(parsed.bars), parsed.errors, parsed.dates_only) == (7983, 7983, [], True)
    assert utc(parsed.bars.times[[0, -1]]) == [
        datetime(1986, 3, 13, 14, 30, tzinfo=UTC),
        datetime(2017, 11, 10, 14, 30, tzinfo=UTC),
    ]
    assert (parsed.bars.open[0], parsed.bars.high[0], parsed.bars.volume[0]) == (0.0672, 0.07533, 1371330506.0)


def test_a_date_is_the_session_open_in_the_exchange_time_zone(write_csv):
    path = write_csv(
        """
        date,open,high,low,close,volume
        2017-11-10,84.1,84.27,83.5,83.87,19396301
        2017-07-10,69.46,70.25,69.2,69.98,15014503
        """
    )
    parsed = parse(path)
    # Sorted by time; 09:30 New York is 13:30 UTC in summer and 14:30 UTC in winter.
    assert utc(parsed.bars.times) == [
        datetime(2017, 7, 10, 13, 30, tzinfo=UTC),
        datetime(2017, 11, 10, 14, 30, tzinfo=UTC),
    ]


def test_a_futures_date_is_the_cme_session_that_opened_the_evening_before(write_csv):
    path = write_csv("date,open,high,low,close\n2017-11-10,2580,2590,2570,2585")
    parsed = parse(path, calendar_name="CMES")
    assert utc(parsed.bars.times) == [datetime(2017, 11, 9, 23, 0, tzinfo=UTC)]  # 17:00 Chicago


def test_naive_times_are_exchange_time_unless_a_zone_is_given_and_offsets_are_kept(write_csv):
    path = write_csv(
        """
        Timestamp,Open,High,Low,Close,Volume
        2017-11-10 09:30:00,84.1,84.2,84.0,84.15,1000
        2017-11-10T09:31,84.15,84.3,84.1,84.2,900
        2017-11-10 14:32:00+00:00,84.2,84.3,84.1,84.25,800
        2017-11-10 09:33:00-05:00,84.25,84.3,84.2,84.3,700
        """
    )
    parsed = parse(path, frequency="minute")
    assert parsed.errors == []
    assert utc(parsed.bars.times) == [datetime(2017, 11, 10, 14, 30 + minute, tzinfo=UTC) for minute in range(4)]
    in_utc = parse(
        write_csv("datetime,open,high,low,close\n2017-11-10 14:30,1,1,1,1", "utc.csv"),
        frequency="minute",
        timezone="UTC",
    )
    assert utc(in_utc.bars.times) == [datetime(2017, 11, 10, 14, 30, tzinfo=UTC)]
    chicago = parse(
        write_csv("datetime,open,high,low,close\n2017-11-10 08:30,1,1,1,1", "cme.csv"),
        frequency="minute",
        calendar_name="CMES",
    )
    assert utc(chicago.bars.times) == [datetime(2017, 11, 10, 14, 30, tzinfo=UTC)]


def test_an_unknown_time_zone_is_refused(write_csv):
    with pytest.raises(BarFileError, match="unknown time zone 'Mars/Olympus'"):
        parse(
            write_csv("datetime,open,high,low,close\n2017-11-10 14:30,1,1,1,1"),
            frequency="minute",
            timezone="Mars/Olympus",
        )


def test_headers_are_case_insensitive_extra_columns_ignored_and_volume_optional(write_csv):
    path = write_csv(
        """
        Close,HIGH,Adj Close,low,Open,Date
        83.87,84.27,83.87,83.5,84.1,2017-11-10
        """
    )
    parsed = parse(path)
    assert parsed.ignored_columns == ["Adj Close"]
    assert (
        parsed.bars.open[0],
        parsed.bars.high[0],
        parsed.bars.low[0],
        parsed.bars.close[0],
        parsed.bars.volume[0],
    ) == (
        84.1,
        84.27,
        83.5,
        83.87,
        0.0,
    )


def test_a_date_column_and_a_time_column_are_read_together(write_csv):
    parsed = parse(write_csv("date,time,open,high,low,close,volume\n2017-11-10,09:30,1,2,1,2,5"), frequency="minute")
    assert utc(parsed.bars.times) == [datetime(2017, 11, 10, 14, 30, tzinfo=UTC)]


# The same bad rows, plain (pandas' fast path) and with a quoted cell (the csv-module path):
# the line numbers and messages must not depend on the path taken.
BAD_ROWS = """
date,open,high,low,close,volume
2017-11-06,84.2,84.7,84.0,84.47,19852151
2017-11-07,abc,84.9,83.9,84.26,17939993
2017-11-08,84.1,83.5,83.9,84.56,18034134
2017-11-09,84.1,84.27,84.3,83.87,19396301
2017-11-10,84.1,84.27,83.5,83.87,-5
2017-11-13,0,84.27,83.5,83.87,100
2017-11-14,84.1,84.27,83.5,83.87,100
2017-11-14,84.2,84.37,83.6,83.97,100
2017-11-15,84.1,84.27,83.5,,100
2017-11-31,84.1,84.27,83.5,83.87,100
2017-11-23,84.1,84.27,83.5,83.87,100
"""
BAD_ROWS_ERRORS = [
    "line 3: column 'open' value 'abc' is not a number",
    "line 4: high 83.5 is below max(open, close, low) = 84.56",
    "line 5: high 84.27 is below max(open, close, low) = 84.3",
    "line 5: low 84.3 is above min(open, close) = 83.87",
    "line 6: volume -5 is negative",
    "line 7: prices must be positive; found open 0",
    "line 7: low 83.5 is above min(open, close) = 0",
    "line 9: time 2017-11-14 14:30:00 UTC repeats line 8",
    "line 10: column 'close' value '' is not a number",
    "line 11: column 'date' value '2017-11-31' is not a date like 2017-11-10 (the file's first row has a date, so every row must)",
    "line 12: column 'date' value '2017-11-23' is not a XNYS trading session (weekend or holiday)",
]


@pytest.mark.parametrize("quoted", [False, True])
def test_bad_rows_are_reported_by_line_column_and_value(write_csv, quoted):
    text = BAD_ROWS.replace("2017-11-06,84.2", '"2017-11-06",84.2') if quoted else BAD_ROWS
    parsed = parse(write_csv(text))
    assert parsed.errors == BAD_ROWS_ERRORS
    assert (parsed.rows_read, parsed.rows_rejected) == (11, 9)
    assert utc(parsed.bars.times) == [
        datetime(2017, 11, 6, 14, 30, tzinfo=UTC),
        datetime(2017, 11, 14, 14, 30, tzinfo=UTC),
    ]


def test_line_numbers_count_blank_lines_and_short_rows(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("date,open,high,low,close,volume\n\n2017-11-09,1,2,1,2,5\n2017-11-10,1,2\n\n2017-11-13,1,2,1,x,5\n")
    parsed = parse(path)
    assert parsed.errors == [
        "line 4: expected 6 fields (date,open,high,low,close,volume), found 3",
        "line 6: column 'close' value 'x' is not a number",
    ]
    assert parsed.rows_read == 3


def test_an_empty_volume_cell_means_no_volume(write_csv):
    parsed = parse(write_csv("date,open,high,low,close,volume\n2017-11-10,1,2,1,2,"))
    assert parsed.errors == [] and parsed.bars.volume.tolist() == [0.0]


def test_naive_times_that_do_not_exist_or_repeat_at_a_clock_change_need_an_offset(write_csv):
    path = write_csv(
        """
        datetime,open,high,low,close
        2017-11-05 01:30,1,1,1,1
        2017-03-12 02:30,1,1,1,1
        2017-11-05 01:30-05:00,1,1,1,1
        """
    )
    parsed = parse(path, frequency="minute")
    assert parsed.errors == [
        "line 2: column 'datetime' value '2017-11-05 01:30' is ambiguous or skipped in America/New_York "
        "(daylight-saving change): give a UTC offset, e.g. 2017-11-05 01:30-05:00",
        "line 3: column 'datetime' value '2017-03-12 02:30' is ambiguous or skipped in America/New_York "
        "(daylight-saving change): give a UTC offset, e.g. 2017-03-12 02:30-05:00",
    ]
    assert utc(parsed.bars.times) == [datetime(2017, 11, 5, 6, 30, tzinfo=UTC)]


def test_times_must_be_whole_seconds_and_all_of_one_form(write_csv):
    path = write_csv(
        """
        datetime,open,high,low,close
        2017-11-10 09:30:00.5,1,1,1,1
        2017-11-10,1,1,1,1
        2017-11-10 nine,1,1,1,1
        """
    )
    assert parse(path, frequency="minute").errors == [
        "line 2: column 'datetime' value '2017-11-10 09:30:00.5' is not on a whole second: bars open on whole seconds",
        "line 3: column 'datetime' value '2017-11-10' is not a date-time like 2017-11-10 09:30:00 "
        "(the file's first row has a time of day, so every row must)",
        "line 4: column 'datetime' value '2017-11-10 nine' is not a date-time like 2017-11-10 09:30:00 "
        "(ISO 8601, optional UTC offset)",
    ]


def test_dates_only_fit_daily_bars(write_csv):
    with pytest.raises(BarFileError, match="holds dates without a time of day .* only fit frequency day"):
        parse(write_csv("date,open,high,low,close\n2017-11-10,1,1,1,1"), frequency="minute")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("date,open,high,low,close\n", "the file has a header but no rows"),
        (
            "when,open,high,low,close\n2017-11-10,1,1,1,1\n",
            r"the header lacks a time column \(date, time, timestamp or datetime\)",
        ),
        ("date,open,close\n2017-11-10,1,1\n", "the header lacks high, low"),
        ("date,open,open,high,low,close\n", "the header repeats column"),
    ],
)
def test_file_level_problems_stop_the_import(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(BarFileError, match=message):
        parse(path)


def test_gzip_is_recognised_by_content_and_file_objects_work(tmp_path):
    raw = b"date,open,high,low,close,volume\n2017-11-10,84.1,84.27,83.5,83.87,19396301\n"
    disguised = tmp_path / "bars.csv"  # gzipped, whatever the name says
    disguised.write_bytes(gzip.compress(raw))
    assert len(parse(disguised).bars) == 1
    assert len(parse(io.BytesIO(raw)).bars) == 1
    assert len(parse(io.StringIO(raw.decode())).bars) == 1


@pytest.mark.parametrize("bad_cell", ["NA", "x"])  # read by pandas as missing / not a number at all
def test_a_large_file_keeps_every_good_row_and_the_line_of_each_bad_one(tmp_path, bad_cell):
    times = pd.date_range("2017-01-03 09:30", periods=50_000, freq="min")
    frame = pd.DataFrame(
        {"datetime": times.strftime("%Y-%m-%d %H:%M:%S"), "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5}
    )
    frame["volume"] = np.arange(len(frame)).astype(str)
    frame.loc[29_999, "volume"] = bad_cell
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False, na_rep="")
    parsed = parse(path, frequency="minute")
    assert parsed.errors == [f"line 30001: column 'volume' value '{bad_cell}' is not a number"]
    assert len(parsed.bars) == 49_999 and parsed.bars.volume[-1] == 49_999
