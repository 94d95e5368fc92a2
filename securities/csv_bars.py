"""Read an OHLCV CSV (or .csv.gz) into `BarArrays`, with line-numbered errors (Django-free).

A plain file (no quotes, no blank lines, the header's number of fields on every line, numbers
where numbers belong) goes through pandas' C parser, and its line numbers follow from a byte
scan; anything else goes through the csv module row by row, which knows every row's line. The
checks then run vectorised over whole columns, so a million rows parse in about a second.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import exchange_calendars
import numpy as np
import pandas as pd

from securities.bar_arrays import PRICE_FIELDS, BarArrays

TIME_COLUMNS = ("date", "time", "timestamp", "datetime")
REQUIRED_COLUMNS = PRICE_FIELDS
# The stored columns are NUMERIC(20, 8) and NUMERIC(24, 6).
PRICE_LIMIT = 1e12
VOLUME_LIMIT = 1e18
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_OFFSET_RE = re.compile(r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")
_EXAMPLE_HEADER = "date,open,high,low,close,volume"


class BarFileError(ValueError):
    """The file cannot be imported; nothing was stored. `errors` lists line-numbered reasons."""

    def __init__(self, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.errors = list(errors or [])


@dataclass
class ParsedBars:
    bars: BarArrays  # the good rows, sorted by time
    rows_read: int  # data rows, blank lines not counted
    errors: list[str] = field(default_factory=list)  # "line N: ...", in line order
    rows_rejected: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    dates_only: bool = False


def exchange_time_zone(calendar_name: str) -> str:
    return str(exchange_calendars.get_calendar(calendar_name).tz)


def exchange_calendar(name: str, first: pd.Timestamp, last: pd.Timestamp):
    """The calendar covering [first, last] (dates): the library's cached default span (about
    20 years back to one ahead) when it does, else one built for the range (slower to build)."""
    calendar = exchange_calendars.get_calendar(name)
    if calendar.first_session <= first and last <= calendar.last_session:
        return calendar
    margin = pd.Timedelta(days=7)
    return exchange_calendars.get_calendar(name, start=(first - margin).date(), end=(last + margin).date())


def time_zone_check(name: str) -> str:
    """`name` if it is an IANA time zone, else a BarFileError saying what to give instead."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BarFileError(f"unknown time zone {name!r}: use an IANA name such as America/New_York or UTC") from None
    return name


def read_file_bytes(file) -> bytes:
    """The content of a path or a binary/text file object, un-gzipped when it starts with gzip's magic bytes."""
    if isinstance(file, str | Path):
        path = Path(file)
        if not path.is_file():
            raise BarFileError(f"no such file: {path}")
        raw = path.read_bytes()
    else:
        if hasattr(file, "seek"):
            file.seek(0)
        raw = file.read()
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise BarFileError(f"the file looks gzipped but cannot be decompressed: {exc}") from None
    return raw


def open_csv_text(file) -> io.TextIOBase:
    """A text stream (UTF-8, BOM dropped) over a path or file object, gzipped or not."""
    return io.TextIOWrapper(io.BytesIO(read_file_bytes(file)), encoding="utf-8-sig", newline="")


@dataclass
class _Table:
    """The used columns of a bar file, row-aligned with `lines` (the file line of each data row)."""

    header: list[str]
    lines: np.ndarray
    widths: np.ndarray  # fields in each row
    strings: dict[int, pd.Series]  # time column(s) by position
    numbers: dict[int, np.ndarray]  # value columns by position, float64, NaN where not a number
    cell_text: Callable[[int, int], str]  # the original text of (row position, column position)


def _numbers(values) -> np.ndarray:
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _table_fast(raw: bytes, header: list[str], time_indexes: list[int], value_indexes: list[int]) -> _Table | None:
    """pandas' C parser, when line numbers are certain (no quotes, no blank lines, every line
    with the header's number of commas) and every value column reads as numbers. Otherwise
    None: _table_csv then finds and names the bad cells."""
    if b'"' in raw:
        return None
    data = np.frombuffer(raw, dtype=np.uint8)
    newlines = np.flatnonzero(data == ord("\n"))
    ends = newlines if raw.endswith(b"\n") else np.r_[newlines, len(raw)]
    starts = np.r_[0, newlines[: len(ends) - 1] + 1]
    commas = np.flatnonzero(data == ord(","))
    comma_counts = np.searchsorted(commas, ends) - np.searchsorted(commas, starts)
    lengths = ends - starts - (data[np.maximum(ends - 1, 0)] == ord("\r"))
    if len(ends) < 2 or np.any(comma_counts[1:] != len(header) - 1) or np.any(lengths[1:] <= 0):
        return None
    try:
        frame = pd.read_csv(
            io.BytesIO(raw),
            header=None,
            skiprows=1,
            usecols=[*time_indexes, *value_indexes],
            dtype={index: str for index in time_indexes} | {index: np.float64 for index in value_indexes},
            skipinitialspace=True,
            encoding="utf-8-sig",
            skip_blank_lines=False,
        )
    except ValueError:  # a value that is not a number
        return None
    if len(frame) != len(ends) - 1:
        return None

    def cell_text(position: int, column: int) -> str:
        line = raw[starts[position + 1] : ends[position + 1]].decode("utf-8", errors="replace").rstrip("\r")
        return line.split(",")[column].strip()

    return _Table(
        header=header,
        lines=np.arange(2, len(frame) + 2, dtype=np.int64),
        widths=np.full(len(frame), len(header), dtype=np.int64),
        strings={index: frame[index].fillna("") for index in time_indexes},
        numbers={index: frame[index].to_numpy(dtype=np.float64) for index in value_indexes},
        cell_text=cell_text,
    )


def _table_csv(raw: bytes, header: list[str], time_indexes: list[int], value_indexes: list[int]) -> _Table:
    """The csv module, row by row: exact line numbers whatever the file looks like."""
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline=""))
    next(reader)
    rows, lines = [], []
    for row in reader:
        if row:  # blank lines are not rows
            rows.append(row)
            lines.append(reader.line_num)
    widths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    width = len(header)
    columns = (
        list(zip(*(row if len(row) == width else [""] * width for row in rows), strict=True)) if rows else [()] * width
    )

    def cell_text(position: int, column: int) -> str:
        row = rows[position]
        return row[column].strip() if column < len(row) else ""

    return _Table(
        header=header,
        lines=np.asarray(lines, dtype=np.int64),
        widths=widths,
        strings={index: pd.Series(columns[index], dtype=object) for index in time_indexes},
        numbers={index: _numbers(columns[index]) for index in value_indexes},
        cell_text=cell_text,
    )


def _read_table(file) -> tuple[_Table, list[int], dict[str, int], list[str]]:
    raw = read_file_bytes(file)
    try:
        header = next(
            csv.reader(io.StringIO(raw[:65536].decode("utf-8-sig", errors="replace").split("\n", 1)[0])), None
        )
        if not header:
            raise BarFileError(f"the file is empty: expected a header row such as {_EXAMPLE_HEADER}")
        time_indexes, value_indexes, ignored = _column_plan(header)
        table = _table_fast(raw, header, time_indexes, list(value_indexes.values()))
        if table is None:
            table = _table_csv(raw, header, time_indexes, list(value_indexes.values()))
    except (UnicodeDecodeError, csv.Error, pd.errors.ParserError) as exc:
        raise BarFileError(f"cannot read the file as UTF-8 CSV (or gzip of one): {exc}") from None
    return table, time_indexes, value_indexes, ignored


def _column_plan(header: list[str]) -> tuple[list[int], dict[str, int], list[str]]:
    """(time column indexes, value column indexes, ignored column names) from a header row."""
    names = [name.strip().lower() for name in header]
    repeated = sorted({name for name in names if names.count(name) > 1 and name})
    if repeated:
        raise BarFileError(f"the header repeats column(s) {', '.join(repeated)}: each column may appear once")
    if "date" in names and "time" in names:
        time_indexes = [names.index("date"), names.index("time")]  # a date column and a time-of-day column
    else:
        time_indexes = [index for index, name in enumerate(names) if name in TIME_COLUMNS][:1]
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if not time_indexes or missing:
        wanted = ([] if time_indexes else ["a time column (date, time, timestamp or datetime)"]) + missing
        raise BarFileError(
            f"the header lacks {', '.join(wanted)}; it reads {','.join(header)!r}, expected e.g. {_EXAMPLE_HEADER} "
            "(names in any case and order; volume optional; other columns ignored)"
        )
    values = {name: names.index(name) for name in (*PRICE_FIELDS, "volume") if name in names}
    used = set(time_indexes) | set(values.values())
    ignored = [header[index].strip() for index in range(len(names)) if index not in used]
    return time_indexes, values, ignored


class _Errors:
    """Line-numbered errors, collected per check and reported in line order."""

    def __init__(self, lines: np.ndarray):
        self.lines = lines
        self.items: list[tuple[int, int, str]] = []
        self.bad = np.zeros(len(lines), dtype=bool)

    def add(self, mask: np.ndarray, message) -> None:
        """Mark the rows in boolean `mask` bad; `message(position)` says why for each."""
        for position in np.flatnonzero(mask):
            self.items.append((int(self.lines[position]), len(self.items), message(position)))
            self.bad[position] = True

    def messages(self) -> list[str]:
        return [f"line {line}: {message}" for line, _, message in sorted(self.items)]


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _parse_naive_or_aware(strings: pd.Series, zone: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(UTC int64 ns with NaT for unparseable, mask of values that parsed but do not exist/are
    ambiguous locally, mask of naive values at midnight: the ones that may lack a time)."""
    result = np.full(len(strings), np.datetime64("NaT", "ns")).astype(np.int64)
    local_problem = np.zeros(len(strings), dtype=bool)
    midnight = np.zeros(len(strings), dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:  # the common case: every value naive
            naive = pd.to_datetime(strings, format="ISO8601", errors="coerce")
            aware_mask = np.zeros(len(strings), dtype=bool) if naive.dt.tz is None else None
        except (ValueError, FutureWarning, AttributeError):
            aware_mask = None
    if aware_mask is None:
        aware_mask = strings.str.strip().str.contains(_OFFSET_RE).to_numpy(dtype=bool)
        naive = pd.to_datetime(strings[~aware_mask], format="ISO8601", errors="coerce")
        aware = pd.to_datetime(strings[aware_mask], format="ISO8601", errors="coerce", utc=True)
        result[aware_mask] = aware.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    localized = naive.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    naive_ns = localized.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    parsed_naive = naive.notna().to_numpy()
    local_problem[~aware_mask] = parsed_naive & localized.isna().to_numpy()
    midnight[~aware_mask] = parsed_naive & (
        naive.to_numpy(dtype="datetime64[ns]").astype(np.int64) % 86_400_000_000_000 == 0
    )
    result[~aware_mask] = naive_ns
    return result, local_problem, midnight


def parse_bars_csv(file, *, calendar_name: str, frequency: str, timezone: str | None = None) -> ParsedBars:
    """Parse and check a bar file. Raises BarFileError for file-level problems; row problems
    land in `errors` (the rows are left out of `bars`).

    Dates without a time are sessions of `calendar_name`: the bar time is that session's open.
    Naive date-times are read in `timezone` (default: the calendar's time zone); values with a
    UTC offset keep it. All times come back as UTC nanoseconds.
    """
    zone = time_zone_check(timezone) if timezone else exchange_time_zone(calendar_name)
    table, time_indexes, value_indexes, ignored = _read_table(file)
    rows = len(table.lines)
    if not rows:
        raise BarFileError("the file has a header but no rows of bars")
    header, width = table.header, len(table.header)
    errors = _Errors(table.lines)
    errors.add(
        table.widths != width,
        lambda p: f"expected {width} fields ({','.join(name.strip() for name in header)}), found {table.widths[p]}",
    )
    unusable = errors.bad.copy()

    time_name = " ".join(header[index].strip() for index in time_indexes)
    time_strings = table.strings[time_indexes[0]]
    if len(time_indexes) == 2:
        time_strings = time_strings + " " + table.strings[time_indexes[1]]
    never = np.iinfo(np.int64).min  # NaT as int64: no time

    # The first well-formed row decides the file's form: dates (sessions) or date-times.
    first = str(time_strings.iat[int(np.argmin(unusable))]).strip()
    dates_only = bool(_DATE_RE.fullmatch(first))
    if dates_only and frequency != "day":
        raise BarFileError(
            f"column {time_name!r} holds dates without a time of day (e.g. {first!r}), which only fit frequency day; "
            f"give date-times for {frequency} bars"
        )
    if dates_only:
        time_strings = time_strings.str.strip()
        days = pd.to_datetime(time_strings, format="%Y-%m-%d", errors="coerce")
        errors.add(
            days.isna().to_numpy() & ~unusable,
            lambda p: f"column {time_name!r} value {time_strings.iat[p]!r} is not a date like 2017-11-10 "
            "(the file's first row has a date, so every row must)",
        )
        times = np.full(rows, never, dtype=np.int64)
        valid_days = days.dropna()
        if len(valid_days):
            calendar = exchange_calendar(calendar_name, valid_days.min(), valid_days.max())
            opens = calendar.opens.reindex(pd.DatetimeIndex(days))
            session_known = opens.notna().to_numpy()
            times[session_known] = opens[session_known].to_numpy(dtype="datetime64[ns]").astype(np.int64)
            errors.add(
                days.notna().to_numpy() & ~session_known & ~unusable,
                lambda p: f"column {time_name!r} value {time_strings.iat[p]!r} is not a {calendar_name} trading session "
                "(weekend or holiday)",
            )
    else:
        times, local_problem, midnight = _parse_naive_or_aware(time_strings, zone)
        # ISO 8601 reads a bare date as midnight; in a file of date-times that is a missing time.
        midnight_positions = np.flatnonzero(midnight)
        bare_dates = [_DATE_RE.fullmatch(str(time_strings.iat[p]).strip()) is not None for p in midnight_positions]
        times[midnight_positions[np.array(bare_dates, dtype=bool)]] = never
        local_problem[midnight_positions[np.array(bare_dates, dtype=bool)]] = False
        errors.add(
            (times == never) & ~local_problem & ~unusable,
            lambda p: f"column {time_name!r} value {time_strings.iat[p]!r} is not a date-time like 2017-11-10 09:30:00"
            + (
                " (the file's first row has a time of day, so every row must)"
                if _DATE_RE.fullmatch(str(time_strings.iat[p]).strip())
                else " (ISO 8601, optional UTC offset)"
            ),
        )
        standard_offset = _offset_text(ZoneInfo(zone).utcoffset(datetime(2001, 1, 1)))
        errors.add(
            local_problem & ~unusable,
            lambda p: f"column {time_name!r} value {time_strings.iat[p]!r} is ambiguous or skipped in {zone} "
            f"(daylight-saving change): give a UTC offset, e.g. {str(time_strings.iat[p]).strip()}{standard_offset}",
        )
    errors.add(
        (times != never) & (times % 1_000_000_000 != 0) & ~unusable,
        lambda p: f"column {time_name!r} value {time_strings.iat[p]!r} is not on a whole second: bars open on whole seconds",
    )

    values = {}
    numbers_known = np.ones(rows, dtype=bool)
    for name in (*PRICE_FIELDS, "volume"):
        if name not in value_indexes:
            values[name] = np.zeros(rows, dtype=np.float64)
            continue
        index = value_indexes[name]
        numbers = table.numbers[index].copy()
        not_finite = ~np.isfinite(numbers)
        if name == "volume" and not_finite.any():  # an empty volume cell means no volume reported
            positions = np.flatnonzero(not_finite & ~unusable)
            empty = np.array([not table.cell_text(p, index) for p in positions], dtype=bool)
            numbers[positions[empty]] = 0.0
            not_finite = ~np.isfinite(numbers)
        column = header[index].strip()
        errors.add(
            not_finite & ~unusable,
            lambda p, c=column, i=index: f"column {c!r} value {table.cell_text(p, i)!r} is not a number",
        )
        limit = VOLUME_LIMIT if name == "volume" else PRICE_LIMIT
        too_large = ~not_finite & (np.abs(numbers) >= limit)
        errors.add(
            too_large & ~unusable,
            lambda p, c=column, i=index, limit=limit: f"column {c!r} value {table.cell_text(p, i)!r} is too large "
            f"(must be below {limit:.0e})",
        )
        numbers_known &= ~not_finite & ~too_large
        values[name] = numbers

    open_, high, low, close, volume = (values[name] for name in (*PRICE_FIELDS, "volume"))
    checkable = numbers_known & ~unusable

    def shown(name, position):
        return table.cell_text(position, value_indexes[name])

    errors.add(
        checkable & ((open_ <= 0) | (high <= 0) | (low <= 0) | (close <= 0)),
        lambda p: "prices must be positive; found "
        + ", ".join(f"{name} {shown(name, p)}" for name in PRICE_FIELDS if values[name][p] <= 0),
    )
    errors.add(
        checkable & (high < np.maximum(np.maximum(open_, close), low)),
        lambda p: f"high {shown('high', p)} is below max(open, close, low) = "
        f"{max((shown(n, p) for n in ('open', 'close', 'low')), key=float)}",
    )
    errors.add(
        checkable & (low > np.minimum(open_, close)),
        lambda p: f"low {shown('low', p)} is above min(open, close) = {min((shown(n, p) for n in ('open', 'close')), key=float)}",
    )
    errors.add(checkable & (volume < 0), lambda p: f"volume {shown('volume', p)} is negative")

    # A time may appear once: later rows with the same time are rejected, naming the first.
    candidates = np.flatnonzero(~errors.bad)
    order = candidates[np.argsort(times[candidates], kind="stable")]
    sorted_times = times[order]
    run_starts = np.r_[True, sorted_times[1:] != sorted_times[:-1]]
    if not run_starts.all():
        first_of_run = np.maximum.accumulate(np.where(run_starts, np.arange(len(order)), 0))
        first_line = np.empty(rows, dtype=np.int64)
        first_line[order] = table.lines[order[first_of_run]]
        repeated = np.zeros(rows, dtype=bool)
        repeated[order[~run_starts]] = True
        errors.add(
            repeated,
            lambda p: f"time {pd.Timestamp(times[p], tz='UTC'):%Y-%m-%d %H:%M:%S} UTC repeats line {first_line[p]}",
        )
        order = order[run_starts]

    bars = BarArrays(times[order], open_[order], high[order], low[order], close[order], volume[order])
    return ParsedBars(
        bars=bars,
        rows_read=rows,
        errors=errors.messages(),
        rows_rejected=int(errors.bad.sum()),
        ignored_columns=ignored,
        dates_only=dates_only,
    )
