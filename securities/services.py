"""Writes to the security master and market data: CSV imports and synthetic bars."""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import islice, repeat
from pathlib import Path

import numpy as np
from django.db import connection, transaction

from securities.bar_arrays import COPY_ROWS_PER_CHUNK, PRICE_FIELDS, VALUE_FIELDS, BarArrays, bar_rows_copy_binary
from securities.csv_bars import PRICE_LIMIT, VOLUME_LIMIT, BarFileError, open_csv_text, parse_bars_csv, time_zone_check
from securities.models import AssetType, Bar, BarFrequency, BarImport, Security
from securities.selectors import security_validate
from securities.synthetic import synthetic_minute_bars

# The exchange calendar whose sessions (and time zone) bar dates refer to, by asset type.
SESSION_CALENDARS = {AssetType.EQUITY: "XNYS", AssetType.FUTURE: "CMES"}

Progress = Callable[[int, int], None]  # (bars written so far, bars to write)
ANALYZE_AFTER_ROWS = 100_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- Security master -----------------------------------------------------------------------

SECURITY_COLUMNS = ("symbol", "name", "asset_type", "exchange", "currency", "sector", "isin", "tick_size", "multiplier", "fractionable", "active")  # fmt: skip
_BOOLEANS = dict.fromkeys(("true", "t", "yes", "y", "1"), True) | dict.fromkeys(("false", "f", "no", "n", "0"), False)


class SecurityImportError(ValueError):
    """The securities file cannot be read at all (nothing was stored)."""


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)  # "line N: reason", one per rejected row
    ignored_columns: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rows = self.created + self.updated + self.unchanged + self.rejected
        text = f"{rows:,} rows: {self.created:,} created, {self.updated:,} updated, {self.unchanged:,} unchanged, {self.rejected:,} rejected"
        if self.ignored_columns:
            text += f" (ignored columns: {', '.join(self.ignored_columns)})"
        return text


def _decimal_value(name: str, text: str) -> Decimal:
    model_field = Security._meta.get_field(name)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{name} {text!r} must be a number greater than 0")
    if -value.as_tuple().exponent > model_field.decimal_places:
        raise ValueError(f"{name} {text!r} has more than {model_field.decimal_places} decimal places")
    if value >= Decimal(10) ** (model_field.max_digits - model_field.decimal_places):
        raise ValueError(f"{name} {text!r} is too large")
    return value


def _text_value(name: str, text: str) -> str:
    limit = Security._meta.get_field(name).max_length
    if len(text) > limit:
        raise ValueError(f"{name} is longer than {limit} characters")
    return text


def _security_row_values(cells: dict[str, str], default_asset_type: str | None) -> dict:
    """Clean values of one row (only the cells it gives); ValueError names the first bad cell."""
    symbol = cells.get("symbol", "").upper()
    if not symbol:
        raise ValueError("symbol is empty")
    if any(character.isspace() for character in symbol):
        raise ValueError(f"symbol {symbol!r} contains a space")
    values = {"symbol": _text_value("symbol", symbol)}
    if not cells.get("name"):
        raise ValueError(f"name is empty (symbol {symbol})")
    values["name"] = _text_value("name", cells["name"])
    asset_type = (cells.get("asset_type") or default_asset_type or "").lower()
    if not asset_type:
        raise ValueError("asset_type is empty and no default was given (use --asset-type equity|future)")
    if asset_type not in AssetType.values:
        raise ValueError(f"asset_type {cells.get('asset_type')!r} is not one of {', '.join(AssetType.values)}")
    values["asset_type"] = asset_type
    for name in ("exchange", "sector"):
        if cells.get(name):
            values[name] = _text_value(name, cells[name])
    if cells.get("currency"):
        currency = cells["currency"].upper()
        if not (len(currency) == 3 and currency.isalpha()):
            raise ValueError(f"currency {cells['currency']!r} is not a three-letter code such as USD")
        values["currency"] = currency
    if cells.get("isin"):
        isin = cells["isin"].upper()
        if not (len(isin) == 12 and isin.isalnum()):
            raise ValueError(f"isin {cells['isin']!r} is not 12 letters and digits")
        values["isin"] = isin
    for name in ("tick_size", "multiplier"):
        if cells.get(name):
            values[name] = _decimal_value(name, cells[name])
    for name in ("fractionable", "active"):
        if cells.get(name):
            if cells[name].lower() not in _BOOLEANS:
                raise ValueError(f"{name} {cells[name]!r} is not true or false")
            values[name] = _BOOLEANS[cells[name].lower()]
    return values


def _existing_securities(keys: set[tuple[str, str]]) -> dict[tuple[str, str], Security]:
    symbols = sorted({symbol for symbol, _ in keys})
    existing = {}
    for start in range(0, len(symbols), 500):  # stays under SQLite's bound-parameter limit
        for security in Security.objects.filter(symbol__in=symbols[start : start + 500]):
            existing[(security.symbol, security.asset_type)] = security
    return existing


@transaction.atomic
def security_import_csv(*, file, default_asset_type: str | None = None) -> ImportReport:
    """Upsert securities from a CSV by (symbol, asset_type).

    Columns (any case and order): symbol and name are required; asset_type (else
    `default_asset_type`), exchange, currency, sector, isin, tick_size, multiplier,
    fractionable, active are optional, and an empty cell keeps the stored value (new rows get
    the model default). Bad rows are reported by line and skipped; the good rows are stored.
    """
    if default_asset_type is not None and default_asset_type not in AssetType.values:
        raise SecurityImportError(f"asset type {default_asset_type!r} is not one of {', '.join(AssetType.values)}")
    try:
        stream = open_csv_text(file)
    except BarFileError as exc:
        raise SecurityImportError(str(exc)) from None
    report = ImportReport()
    try:
        reader = csv.reader(stream)
        header = [name.strip().lower() for name in next(reader, [])]
        missing = [name for name in ("symbol", "name") if name not in header]
        if missing:
            raise SecurityImportError(
                f"the header lacks {', '.join(missing)}; it reads {','.join(header)!r}, expected e.g. "
                "symbol,name,asset_type,exchange,currency,sector,isin[,multiplier,tick_size]"
            )
        report.ignored_columns = [name for name in header if name not in SECURITY_COLUMNS]
        rows = {}  # (symbol, asset_type) -> (line, values)
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            if len(row) != len(header):
                report.errors.append(f"line {line}: expected {len(header)} fields, found {len(row)}")
                continue
            cells = {name: value.strip() for name, value in zip(header, row, strict=True) if name in SECURITY_COLUMNS}
            try:
                values = _security_row_values(cells, default_asset_type)
            except ValueError as exc:
                report.errors.append(f"line {line}: {exc}")
                continue
            key = (values["symbol"], values["asset_type"])
            if key in rows:
                report.errors.append(f"line {line}: {key[0]} ({key[1]}) repeats line {rows[key][0]}; the first is kept")
                continue
            rows[key] = (line, values)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SecurityImportError(f"cannot read the file as UTF-8 CSV: {exc}") from None
    finally:
        stream.close()
    report.rejected = len(report.errors)

    existing = _existing_securities(set(rows))
    to_write = []
    for key, (_, values) in rows.items():
        current = existing.get(key)
        if current is None:
            to_write.append(Security(**values))
            report.created += 1
        elif any(getattr(current, name) != value for name, value in values.items()):
            merged = {name: getattr(current, name) for name in SECURITY_COLUMNS} | values
            to_write.append(Security(**merged))
            report.updated += 1
        else:
            report.unchanged += 1
    update_fields = [name for name in SECURITY_COLUMNS if name in header and name not in ("symbol", "asset_type")]
    Security.objects.bulk_create(
        to_write,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["symbol", "asset_type"],
        update_fields=[*update_fields, "updated_at"],
    )
    return report


# --- Bars ----------------------------------------------------------------------------------


@dataclass
class BarImportReport:
    security: Security
    frequency: str
    source: str
    synthetic: bool
    rows_imported: int
    rows_rejected: int
    rows_replaced: int  # stored bars in [first_time, last_time] that this import replaced
    first_time: datetime | None
    last_time: datetime | None
    elapsed_seconds: float
    bar_import: BarImport
    errors: list[str] = field(default_factory=list)  # rows left out under skip_bad
    ignored_columns: list[str] = field(default_factory=list)

    def summary(self) -> str:
        label = "synthetic bars" if self.synthetic else "bars"
        span = f" {self.first_time:%Y-%m-%d %H:%M} .. {self.last_time:%Y-%m-%d %H:%M} UTC" if self.first_time else ""
        return (
            f"{self.rows_imported:,} {self.frequency} {label} of {self.security.symbol} ({self.security.asset_type}){span}: "
            f"{self.rows_replaced:,} replaced, {self.rows_rejected:,} rejected, in {self.elapsed_seconds:.2f} s"
        )


def _utc(nanoseconds: int) -> datetime:
    return EPOCH + timedelta(microseconds=nanoseconds // 1000)


def _sqlite_time_strings(times: np.ndarray) -> list[str]:
    # Django stores aware datetimes on SQLite as "YYYY-MM-DD HH:MM:SS" in UTC; range queries
    # compare these strings, so stored bars must use exactly that form.
    text = np.datetime_as_string(times.view("datetime64[ns]").astype("datetime64[s]"), unit="s")
    characters = text.view("U1").reshape(len(text), -1).copy()
    characters[:, 10] = " "
    return characters.view(f"U{characters.shape[1]}").ravel().tolist()


def _bars_insert_postgresql(
    cursor, *, security_id: int, frequency: str, bars: BarArrays, progress: Progress | None
) -> None:
    # One binary COPY straight into the bar table (NUMERIC encoded in numpy, see bar_arrays).
    table = connection.ops.quote_name(Bar._meta.db_table)
    statement = (
        f"COPY {table} (security_id, frequency, time, open, high, low, close, volume) FROM STDIN (FORMAT BINARY)"
    )
    with connection.wrap_database_errors, cursor.cursor.copy(statement) as copy:
        # Chunk 0 is the stream header; chunk k ends with row k * COPY_ROWS_PER_CHUNK.
        for index, chunk in enumerate(bar_rows_copy_binary(security_id=security_id, frequency=frequency, bars=bars)):
            copy.write(chunk)
            if progress and index:
                progress(min(index * COPY_ROWS_PER_CHUNK, len(bars)), len(bars))


def _bars_insert_sqlite(
    cursor, *, security_id: int, frequency: str, bars: BarArrays, progress: Progress | None
) -> None:
    table = connection.ops.quote_name(Bar._meta.db_table)
    rows = zip(
        repeat(security_id),
        repeat(frequency),
        _sqlite_time_strings(bars.times),
        *(getattr(bars, name).tolist() for name in VALUE_FIELDS),
        strict=False,  # the repeats are endless; the columns decide the length
    )
    sql = f"INSERT INTO {table} (security_id, frequency, time, open, high, low, close, volume) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    written = 0
    while batch := list(islice(rows, 50_000)):
        cursor.executemany(sql, batch)
        written += len(batch)
        if progress:
            progress(written, len(bars))


@transaction.atomic
def bars_store(
    *,
    security: Security,
    frequency: str,
    bars: BarArrays,
    source: str,
    synthetic: bool = False,
    rows_rejected: int = 0,
    user=None,
    progress: Progress | None = None,
) -> BarImportReport:
    """Store bars (sorted, unique, whole-second times) for (security, frequency), replacing the
    stored bars in [first, last] of `bars`, and record the BarImport: all or nothing."""
    started = time.perf_counter()
    if frequency not in BarFrequency.values:
        raise ValueError(f"frequency {frequency!r} is not one of {', '.join(BarFrequency.values)}")
    if not len(bars):
        raise ValueError("no bars to store")
    if np.any(np.diff(bars.times) <= 0) or np.any(bars.times % 1_000_000_000):
        raise ValueError("bar times must be strictly increasing whole seconds")
    prices = np.concatenate([getattr(bars, name) for name in PRICE_FIELDS])
    if not (
        np.all(prices > 0)
        and np.all(prices < PRICE_LIMIT)
        and np.all(bars.volume >= 0)
        and np.all(bars.volume < VOLUME_LIMIT)
    ):
        raise ValueError(f"prices must be in (0, {PRICE_LIMIT:.0e}) and volume in [0, {VOLUME_LIMIT:.0e})")
    first, last = _utc(int(bars.times[0])), _utc(int(bars.times[-1]))
    # Imports of one security take turns, so two overlapping imports cannot interleave.
    list(Security.objects.select_for_update().filter(pk=security.pk).values_list("pk", flat=True))
    replaced, _ = Bar.objects.filter(security=security, frequency=frequency, time__range=(first, last)).delete()
    insert = _bars_insert_postgresql if connection.vendor == "postgresql" else _bars_insert_sqlite
    with connection.cursor() as cursor:
        insert(cursor, security_id=security.pk, frequency=frequency, bars=bars, progress=progress)
        if connection.vendor == "postgresql" and len(bars) >= ANALYZE_AFTER_ROWS:
            # Fresh statistics keep the planner on the (security, frequency, time) index for
            # small ranges right after a big load, before autovacuum catches up.
            cursor.execute(f"ANALYZE {connection.ops.quote_name(Bar._meta.db_table)}")
    bar_import = BarImport.objects.create(
        security=security,
        frequency=frequency,
        source=source[: BarImport._meta.get_field("source").max_length],
        synthetic=synthetic,
        rows_imported=len(bars),
        rows_rejected=rows_rejected,
        first_time=first,
        last_time=last,
        imported_by=user,
    )
    return BarImportReport(
        security=security,
        frequency=frequency,
        source=bar_import.source,
        synthetic=synthetic,
        rows_imported=len(bars),
        rows_rejected=rows_rejected,
        rows_replaced=replaced,
        first_time=first,
        last_time=last,
        elapsed_seconds=time.perf_counter() - started,
        bar_import=bar_import,
    )


def _security_for_bars(*, symbol: str, asset_type: str) -> Security:
    if asset_type not in AssetType.values:
        raise BarFileError(f"asset type {asset_type!r} is not one of {', '.join(AssetType.values)}")
    validation = security_validate(symbol=symbol, asset_type=asset_type)
    if validation.security is not None:
        return validation.security
    problem = f"no security {validation.symbol or repr(symbol)} ({asset_type}) in the security master"
    if validation.found_as:
        problem += f"; it exists as {' and '.join(validation.found_as)}: check the asset type, or"
    elif validation.corrections:
        problem += f"; did you mean {', '.join(correction.symbol for correction in validation.corrections)}? If not,"
    else:
        problem += ";"
    raise BarFileError(f"{problem} add it first with `manage.py import_securities FILE.csv`")


def bars_import(
    *,
    file,
    symbol: str,
    asset_type: str,
    frequency: str,
    skip_bad: bool = False,
    timezone: str | None = None,
    synthetic: bool = False,
    source: str | None = None,
    user=None,
    progress: Progress | None = None,
) -> BarImportReport:
    """Import an OHLCV CSV (or .csv.gz) for one security and frequency.

    A file with bad rows is rejected whole (BarFileError listing them by line) unless
    `skip_bad`, which stores the good rows and reports the rest. Dates are sessions of the
    security's exchange (bar time = session open); naive date-times are read in `timezone`
    (default: the exchange's). The file is parsed before the storing transaction opens, so a
    slow parse never holds the database.
    """
    started = time.perf_counter()
    if frequency not in BarFrequency.values:
        raise BarFileError(f"frequency {frequency!r} is not one of {', '.join(BarFrequency.values)}")
    if timezone:
        time_zone_check(timezone)
    security = _security_for_bars(symbol=symbol, asset_type=asset_type)
    if source is None:
        source = Path(str(getattr(file, "name", None) or file)).name
    parsed = parse_bars_csv(
        file, calendar_name=SESSION_CALENDARS[AssetType(asset_type)], frequency=frequency, timezone=timezone
    )
    if parsed.errors and not skip_bad:
        raise BarFileError(
            f"{source}: {parsed.rows_rejected:,} of {parsed.rows_read:,} rows are bad, so nothing was imported; "
            f"fix them, or use --skip-bad to import the {parsed.rows_read - parsed.rows_rejected:,} good rows",
            parsed.errors,
        )
    if not len(parsed.bars):
        raise BarFileError(f"{source}: no good rows to import", parsed.errors)
    report = bars_store(
        security=security,
        frequency=frequency,
        bars=parsed.bars,
        source=source,
        synthetic=synthetic,
        rows_rejected=parsed.rows_rejected,
        user=user,
        progress=progress,
    )
    return dataclasses.replace(
        report,
        errors=parsed.errors,
        ignored_columns=parsed.ignored_columns,
        elapsed_seconds=time.perf_counter() - started,
    )


def bars_generate_synthetic(
    *,
    security: Security,
    frequency: str,
    start_date: date | str,
    end_date: date | str,
    seed: int,
    start_price: float = 100.0,
    annual_volatility: float = 0.25,
    drift: float = 0.05,
    average_daily_volume: float = 1_000_000,
    user=None,
    progress: Progress | None = None,
) -> BarImportReport:
    """Generate seeded bars along the security's exchange sessions and store them (synthetic=True)."""
    started = time.perf_counter()
    calendar = SESSION_CALENDARS[AssetType(security.asset_type)]
    bars = synthetic_minute_bars(
        symbol=security.symbol,
        start_date=start_date,
        end_date=end_date,
        seed=seed,
        start_price=start_price,
        calendar=calendar,
        annual_volatility=annual_volatility,
        drift=drift,
        frequency=frequency,
        tick_size=float(security.tick_size),
        average_daily_volume=average_daily_volume,
    )
    if not len(bars):
        raise ValueError(f"no {calendar} sessions between {start_date} and {end_date}")
    source = (
        f"synthetic {calendar} random walk: seed {seed}, start price {start_price}, volatility {annual_volatility}, "
        f"drift {drift}, {start_date}..{end_date}"
    )
    report = bars_store(
        security=security, frequency=frequency, bars=bars, source=source, synthetic=True, user=user, progress=progress
    )
    return dataclasses.replace(report, elapsed_seconds=time.perf_counter() - started)
