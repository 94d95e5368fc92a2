"""Reads of the security master and market data: lookups (product.md §12) and bars as arrays."""

from __future__ import annotations

import bisect
import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
from django.db import DatabaseError, connection, transaction
from django.db.models import Case, Count, IntegerField, Max, Min, Q, Value, When
from django.db.models.functions import Length, Lower

from securities.bar_arrays import VALUE_FIELDS, BarArrays, bar_arrays_from_copy_binary
from securities.models import AssetType, Bar, BarBlock, BarFrequency, BarSeries, Security

RECOGNISED = "recognised"
OTHER_ASSET_TYPE = "other_asset_type"
UNKNOWN = "unknown"
MAX_CORRECTIONS = 5
# Below this similarity a suggestion is noise rather than help.
MIN_CORRECTION_SCORE = 0.5
# A name match ranks just below a symbol one typo away.
NAME_MATCH_WEIGHT = 0.9


@dataclass(frozen=True)
class Correction:
    symbol: str
    name: str
    asset_type: str
    score: float  # 0..1, higher is closer


@dataclass(frozen=True)
class SecurityValidation:
    status: str  # RECOGNISED | OTHER_ASSET_TYPE | UNKNOWN
    symbol: str  # normalised: stripped, upper case
    asset_type: str  # the expected asset type
    security: Security | None = None
    name: str = ""
    found_as: list[str] = field(default_factory=list)  # asset types the symbol exists under (OTHER_ASSET_TYPE)
    message: str = ""  # for the operator, next to the field
    corrections: list[Correction] = field(default_factory=list)  # closest symbols (UNKNOWN)

    @property
    def recognised(self) -> bool:
        return self.status == RECOGNISED


def _asset_type_checked(asset_type: str) -> str:
    """The asset type value; schemas write EQUITY/FUTURE, the database equity/future."""
    value = str(asset_type).strip().lower()
    if value not in AssetType.values:
        raise ValueError(f"asset type {asset_type!r} is not one of {', '.join(AssetType.values)}")
    return value


def security_get(*, symbol: str, asset_type: str) -> Security | None:
    return Security.objects.filter(
        symbol=(symbol or "").strip().upper(), asset_type=_asset_type_checked(asset_type)
    ).first()


# --- Corrections ------------------------------------------------------------------------------
# Every keystroke of a symbol field may ask for corrections, so the (symbol, name, asset type)
# directory is kept in memory and only reloaded when a cheap aggregate says the table changed
# (in this process or another: imports, the admin).

_NAME_WORD_RE = re.compile(r"[a-z0-9&]+")


@dataclass(frozen=True, slots=True)
class _Entry:
    symbol: str
    name: str
    asset_type: str


@dataclass(frozen=True)
class _Directory:
    """Every security as plain tuples, plus what lets a keystroke skip most of them at numpy
    speed: symbol lengths, each symbol's character counts, and the name words sorted for prefix
    search."""

    entries: tuple[_Entry, ...]
    lengths: np.ndarray  # int, per entry
    char_counts: np.ndarray  # uint8 [entry, character code point]
    words: tuple[str, ...]  # every name word, sorted
    word_entries: tuple[int, ...]  # the entry of each word

    @classmethod
    def build(cls, rows) -> _Directory:
        entries = tuple(_Entry(symbol, name, asset_type) for symbol, name, asset_type in rows)
        char_counts = np.zeros((len(entries), 128), dtype=np.uint8)
        for index, entry in enumerate(entries):
            for character in entry.symbol:
                char_counts[index, min(ord(character), 127)] += 1
        words = sorted(
            (word, index)
            for index, entry in enumerate(entries)
            for word in set(_NAME_WORD_RE.findall(entry.name.lower()))
            if len(word) > 1
        )
        return cls(
            entries=entries,
            lengths=np.array([len(entry.symbol) for entry in entries], dtype=np.int64),
            char_counts=char_counts,
            words=tuple(word for word, _ in words),
            word_entries=tuple(index for _, index in words),
        )


_directory_lock = threading.Lock()
_directory: dict = {"version": None, "directory": _Directory.build(())}


def _security_directory() -> _Directory:
    stamp = Security.objects.aggregate(count=Count("id"), last_id=Max("id"), changed=Max("updated_at"))
    version = (connection.alias, connection.settings_dict["NAME"], stamp["count"], stamp["last_id"], stamp["changed"])
    with _directory_lock:
        if _directory["version"] != version:
            _directory["directory"] = _Directory.build(
                Security.objects.values_list("symbol", "name", "asset_type").order_by("symbol")
            )
            _directory["version"] = version
        return _directory["directory"]


def _typing_distance(typed: str, symbol: str) -> float:
    """Edit distance where swapping two neighbouring letters counts half (the commonest slip)."""
    previous_row = None
    row = [float(j) for j in range(len(symbol) + 1)]
    for i in range(1, len(typed) + 1):
        current = [float(i)] + [0.0] * len(symbol)
        for j in range(1, len(symbol) + 1):
            cost = 0.0 if typed[i - 1] == symbol[j - 1] else 1.0
            best = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + cost)
            if i > 1 and j > 1 and typed[i - 1] == symbol[j - 2] and typed[i - 2] == symbol[j - 1]:
                best = min(best, previous_row[j - 2] + 0.5)
            current[j] = best
        previous_row, row = row, current
    return row[-1]


def _scores(query: str, directory: _Directory) -> dict[int, float]:
    """Similarity to `query` of every entry that reaches MIN_CORRECTION_SCORE: by edit distance
    to the symbol, or by the query being the start of a word of the name (a company name typed
    into a symbol field)."""
    scores: dict[int, float] = {}
    query_length = len(query)
    if len(directory.entries):
        # A lower bound of the distance, for every symbol at once: each typed character the symbol
        # lacks, and each symbol character not typed, takes an edit. Only symbols the bound
        # leaves a chance get the real distance.
        longest = np.maximum(directory.lengths, query_length)
        shared = np.zeros(len(directory.entries), dtype=np.int64)
        for character in set(query):
            shared += np.minimum(directory.char_counts[:, min(ord(character), 127)], query.count(character))
        bound = np.maximum(query_length - shared, directory.lengths - shared)
        for index in np.flatnonzero(1 - bound / longest >= MIN_CORRECTION_SCORE).tolist():
            symbol = directory.entries[index].symbol
            score = 1 - _typing_distance(query, symbol) / max(query_length, len(symbol))
            if score >= MIN_CORRECTION_SCORE:
                scores[index] = score
    if query_length >= 3:
        lowered = query.lower()
        position = bisect.bisect_left(directory.words, lowered)
        while position < len(directory.words) and directory.words[position].startswith(lowered):
            index = directory.word_entries[position]
            score = NAME_MATCH_WEIGHT * (0.7 + 0.3 * len(lowered) / len(directory.words[position]))
            if score > scores.get(index, 0.0):
                scores[index] = score
            position += 1
    return scores


def _corrections(symbol: str, asset_type: str) -> list[Correction]:
    """Up to MAX_CORRECTIONS most similar securities, those of the expected asset type first."""
    directory = _security_directory()
    ranked = sorted(
        (
            directory.entries[index].asset_type != asset_type,
            -score,
            abs(len(symbol) - len(directory.entries[index].symbol)),
            directory.entries[index].symbol,
            index,
        )
        for index, score in _scores(symbol, directory).items()
    )
    return [
        Correction(symbol=directory.entries[index].symbol, name=directory.entries[index].name, asset_type=directory.entries[index].asset_type, score=round(-negative, 3))
        for _other_type, negative, _gap, _symbol, index in ranked[:MAX_CORRECTIONS]
    ]


def security_validate(*, symbol: str, asset_type: str) -> SecurityValidation:
    """Check a symbol typed into a field that expects `asset_type` (product.md §12)."""
    asset_type = _asset_type_checked(asset_type)
    normalised = (symbol or "").strip().upper()
    if not normalised:
        return SecurityValidation(status=UNKNOWN, symbol="", asset_type=asset_type, message="enter a symbol")
    matches = list(Security.objects.filter(symbol=normalised))
    for security in matches:
        if security.asset_type == asset_type:
            message = security.name if security.active else f"{security.name} (inactive)"
            return SecurityValidation(
                status=RECOGNISED,
                symbol=normalised,
                asset_type=asset_type,
                security=security,
                name=security.name,
                message=message,
            )
    if matches:
        found_as = [security.asset_type for security in matches]
        labels = " and ".join(AssetType(value).label for value in found_as)
        return SecurityValidation(
            status=OTHER_ASSET_TYPE,
            symbol=normalised,
            asset_type=asset_type,
            name=matches[0].name,
            found_as=found_as,
            message=f"found as {labels} while this field expects {AssetType(asset_type).label}",
        )
    corrections = _corrections(normalised, asset_type)
    if corrections:
        suggestions = ", ".join(
            correction.symbol
            if correction.asset_type == asset_type
            else f"{correction.symbol} ({AssetType(correction.asset_type).label})"
            for correction in corrections
        )
        message = f"unknown symbol '{normalised}' — did you mean {suggestions}?"
    else:
        message = f"unknown symbol '{normalised}' — nothing similar in the security master"
    return SecurityValidation(
        status=UNKNOWN, symbol=normalised, asset_type=asset_type, message=message, corrections=corrections
    )


def _word_start(word: str) -> Q:
    """The name has a word beginning with `word` (case-insensitive)."""
    condition = Q(name__istartswith=word)
    for separator in (" ", "(", "-", "/", "."):
        condition |= Q(name__icontains=separator + word)
    return condition


def security_search(*, query: str, asset_type: str | None = None, limit: int = 20) -> list[Security]:
    """Securities whose symbol starts with `query` (shortest first), then those whose name has a
    word starting with each word of `query` (any order)."""
    text = (query or "").strip()
    if not text or limit <= 0:
        return []
    candidates = Security.objects.all()
    if asset_type:
        candidates = candidates.filter(asset_type=_asset_type_checked(asset_type))
    by_symbol = list(
        candidates.filter(symbol__startswith=text.upper()).order_by(Length("symbol"), "symbol", "asset_type")[:limit]
    )
    if len(by_symbol) >= limit:
        return by_symbol
    words = text.split()
    by_name = candidates.exclude(pk__in=[security.pk for security in by_symbol])
    for word in words:
        by_name = by_name.filter(_word_start(word))
    by_name = by_name.annotate(
        name_first=Case(When(name__istartswith=words[0], then=Value(0)), default=Value(1), output_field=IntegerField())
    ).order_by("name_first", Lower("name"), "symbol", "asset_type")
    return by_symbol + list(by_name[: limit - len(by_symbol)])


# --- Bars -------------------------------------------------------------------------------------


def _security_id(security: Security | int) -> int:
    return security.pk if isinstance(security, Security) else int(security)


def bars_as_arrays(*, security: Security | int, frequency: str, start: datetime, end: datetime) -> BarArrays:
    """Bars of (security, frequency) with start <= time < end, oldest first, as numpy arrays
    (times int64 ns UTC; prices and volume float64), without building ORM objects.

    On PostgreSQL the bars come from the packed `BarBlock` cache, equal to the bar rows to the
    byte. Filling the cache for periods that lack a current block is this selector's only write
    (no other data changes); if it cannot write (a read-only transaction), it still answers
    from the rows.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes (UTC)")
    security_id = _security_id(security)
    if connection.vendor == "postgresql":
        return _bars_from_blocks(security_id=security_id, frequency=frequency, start=start, end=end)
    return _bar_rows_as_arrays(security_id=security_id, frequency=frequency, start=start, end=end)


def _bar_rows_as_arrays(*, security_id: int, frequency: str, start: datetime, end: datetime) -> BarArrays:
    """bars_as_arrays read from the bar table itself."""
    table = connection.ops.quote_name(Bar._meta.db_table)
    # No ORDER BY: rows arrive in time order from the index (or the table's insertion order),
    # and sorting in numpy when they do not is cheaper than a server sort that spills to disk.
    if connection.vendor == "postgresql":
        # Binary COPY of fixed-width rows decodes in one numpy step (see bar_arrays).
        floats = ", ".join(f"{name}::float8" for name in VALUE_FIELDS)
        statement = (
            f"COPY (SELECT time, {floats} FROM {table} WHERE security_id = %s AND frequency = %s "
            "AND time >= %s AND time < %s) TO STDOUT (FORMAT BINARY)"
        )
        with (
            connection.cursor() as cursor,
            connection.wrap_database_errors,
            cursor.cursor.copy(statement, [security_id, frequency, start, end]) as copy,
        ):
            data = bytearray()
            for block in copy:
                data += block
        bars = bar_arrays_from_copy_binary(data)
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT time, {', '.join(VALUE_FIELDS)} FROM {table} WHERE security_id = %s AND frequency = %s "
                "AND time >= %s AND time < %s",
                [
                    security_id,
                    frequency,
                    connection.ops.adapt_datetimefield_value(start),
                    connection.ops.adapt_datetimefield_value(end),
                ],
            )
            rows = cursor.fetchall()
        if not rows:
            return BarArrays.empty()
        import pandas  # a third of a second to import: only SQLite's text times need it

        times, *values = zip(*rows, strict=True)
        nanoseconds = pandas.to_datetime(pandas.Series(times), format="ISO8601").to_numpy(dtype="datetime64[ns]").astype(np.int64)
        bars = BarArrays(nanoseconds, *(np.asarray(column, dtype=np.float64) for column in values))
    if np.any(np.diff(bars.times) < 0):
        bars = bars.take(np.argsort(bars.times, kind="stable"))
    return bars


# --- Bar blocks (PostgreSQL) ------------------------------------------------------------------
# Decoding a million bars from rows costs the server a value-by-value output and the client a
# row-by-row parse; a block holds one period of a series as six packed little-endian columns,
# so the same read is a few large byte strings. Triggers on the bar table (migration 0003) bump
# the series' BarSeries.revision in every write statement; a block is current while it carries
# that revision.

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BLOCK_COLUMNS = ("times", *VALUE_FIELDS)
_BLOCK_DTYPES = {"times": np.dtype("<i8"), **dict.fromkeys(VALUE_FIELDS, np.dtype("<f8"))}
# The period a block covers, by bar frequency: a few hundred (daily) to some 25,000 bars (seconds).
_PERIOD_UNITS = {
    BarFrequency.SECOND: "day",
    BarFrequency.MINUTE: "month",
    BarFrequency.HOUR: "year",
    BarFrequency.DAY: "year",
}

logger = logging.getLogger(__name__)


def _nanoseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _period_index(moment: datetime, unit: str) -> int:
    """A number per period, consecutive periods consecutive numbers; `moment` is in UTC."""
    if unit == "year":
        return moment.year
    if unit == "month":
        return moment.year * 12 + moment.month - 1
    return moment.toordinal()


def _period_start(index: int, unit: str) -> datetime:
    if unit == "year":
        return datetime(index, 1, 1, tzinfo=UTC)
    if unit == "month":
        return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
    day = date.fromordinal(index)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _binary_cursor():
    """A psycopg cursor with server-side binding on Django's connection (same transaction):
    byte strings travel as binary, where Django's client-side binding would spell them in hex."""
    import psycopg

    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def _series_revision_sql() -> str:
    series = connection.ops.quote_name(BarSeries._meta.db_table)
    # A series without a row has never been written since the triggers exist: revision 0.
    return f"COALESCE((SELECT revision FROM {series} WHERE security_id = %s AND frequency = %s), 0)"


def _current_blocks(
    cursor, *, security_id: int, frequency: str, first_period: datetime, end: datetime
) -> tuple[int, dict[datetime, BarArrays]]:
    """The series' revision and its blocks of that revision for the periods starting in
    [first_period, end), read in one statement: a block that this snapshot sees with the
    revision this snapshot sees holds exactly that revision's bars."""
    blocks_table = connection.ops.quote_name(BarBlock._meta.db_table)
    columns = ", ".join(f"block.{connection.ops.quote_name(name)}" for name in _BLOCK_COLUMNS)
    cursor.execute(
        f"SELECT series.revision, block.period_start, {columns} "
        f"FROM (SELECT {_series_revision_sql()} AS revision) AS series "
        f"LEFT JOIN {blocks_table} AS block ON block.security_id = %s AND block.frequency = %s "
        "AND block.revision = series.revision AND block.period_start >= %s AND block.period_start < %s "
        "ORDER BY block.period_start",
        [security_id, frequency, security_id, frequency, first_period, end],
        binary=True,
    )
    rows = cursor.fetchall()
    blocks = {
        row[1]: BarArrays(
            *(
                np.frombuffer(data, dtype=_BLOCK_DTYPES[name])
                for name, data in zip(_BLOCK_COLUMNS, row[2:], strict=True)
            )
        )
        for row in rows
        if row[1] is not None
    }
    return rows[0][0], blocks


def _blocks_build(
    *, security_id: int, frequency: str, period_indexes: list[int], unit: str
) -> dict[datetime, BarArrays]:
    """Blocks of the given periods from the bar rows: one COPY per run of consecutive periods."""
    blocks = {}
    runs: list[list[int]] = []
    for index in period_indexes:
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    for run in runs:
        starts = [_period_start(index, unit) for index in (*run, run[-1] + 1)]
        bars = _bar_rows_as_arrays(security_id=security_id, frequency=frequency, start=starts[0], end=starts[-1])
        cuts = np.searchsorted(bars.times, [_nanoseconds(moment) for moment in starts])
        for position, period_start in enumerate(starts[:-1]):
            blocks[period_start] = bars.take(slice(cuts[position], cuts[position + 1]))
    return blocks


def _blocks_store(
    cursor, *, security_id: int, frequency: str, revision: int, blocks: dict[datetime, BarArrays]
) -> None:
    blocks_table = connection.ops.quote_name(BarBlock._meta.db_table)
    fixed = ("security_id", "frequency", "period_start", "revision", "points", "first_time", "last_time")
    names = ", ".join(connection.ops.quote_name(name) for name in (*fixed, *_BLOCK_COLUMNS))
    updates = ", ".join(
        f"{connection.ops.quote_name(name)} = EXCLUDED.{connection.ops.quote_name(name)}"
        for name in (*fixed[3:], *_BLOCK_COLUMNS)
    )
    rows = []
    for period_start in sorted(blocks):  # one order for every writer: no deadlocks between them
        bars = blocks[period_start]
        first_time = _EPOCH + timedelta(microseconds=int(bars.times[0]) // 1000) if len(bars) else None
        last_time = _EPOCH + timedelta(microseconds=int(bars.times[-1]) // 1000) if len(bars) else None
        packed = [getattr(bars, name).astype(_BLOCK_DTYPES[name], copy=False).tobytes() for name in _BLOCK_COLUMNS]
        rows.append((security_id, frequency, period_start, revision, len(bars), first_time, last_time, *packed))
    cursor.executemany(
        f"INSERT INTO {blocks_table} ({names}) VALUES ({', '.join(['%s'] * len(fixed) + ['%b'] * len(_BLOCK_COLUMNS))}) "
        f"ON CONFLICT (security_id, frequency, period_start) DO UPDATE SET {updates} "
        f"WHERE EXCLUDED.revision >= {blocks_table}.revision",
        rows,
    )


@transaction.atomic
def _bars_from_blocks(*, security_id: int, frequency: str, start: datetime, end: datetime) -> BarArrays:
    # In one transaction, so a TRUNCATE of the bar table (which drops every block) waits for
    # this fill to commit rather than slipping between the read of the rows and the write.
    if frequency not in _PERIOD_UNITS:
        return _bar_rows_as_arrays(security_id=security_id, frequency=frequency, start=start, end=end)
    if start >= end:
        return BarArrays.empty()
    unit = _PERIOD_UNITS[frequency]
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    first_index = _period_index(start, unit)
    last_index = _period_index(end - timedelta(microseconds=1), unit)
    with _binary_cursor() as cursor, connection.wrap_database_errors:
        revision, blocks = _current_blocks(
            cursor, security_id=security_id, frequency=frequency, first_period=_period_start(first_index, unit), end=end
        )
        if len(blocks) < last_index - first_index + 1:
            # Only periods holding bars of the window need a block (a window may span centuries).
            cursor.execute(
                f"SELECT MIN(time), MAX(time) FROM {connection.ops.quote_name(Bar._meta.db_table)} "
                "WHERE security_id = %s AND frequency = %s AND time >= %s AND time < %s",
                [security_id, frequency, start, end],
            )
            first_time, last_time = cursor.fetchone()
            if first_time is None:
                return BarArrays.empty()
            missing = [
                index
                for index in range(
                    _period_index(first_time.astimezone(UTC), unit), _period_index(last_time.astimezone(UTC), unit) + 1
                )
                if _period_start(index, unit) not in blocks
            ]
            if missing:
                # The revision was read before these rows (READ COMMITTED: each statement sees
                # at least what an earlier one saw), so they hold at least that revision's bars.
                # A write committed in between shows as a newer revision now: then the new
                # blocks could mix two versions with the cached ones, so answer from the rows
                # alone and leave the cache to the next read.
                built = _blocks_build(security_id=security_id, frequency=frequency, period_indexes=missing, unit=unit)
                cursor.execute(f"SELECT {_series_revision_sql()}", [security_id, frequency])
                if cursor.fetchone()[0] != revision:
                    return _bar_rows_as_arrays(security_id=security_id, frequency=frequency, start=start, end=end)
                try:
                    with transaction.atomic(), connection.wrap_database_errors:
                        _blocks_store(
                            cursor, security_id=security_id, frequency=frequency, revision=revision, blocks=built
                        )
                except DatabaseError as exc:
                    logger.warning("bar blocks of security %s %s not stored: %s", security_id, frequency, exc)
                blocks |= built
    return _blocks_cut(blocks, start=start, end=end)


def _blocks_cut(blocks: dict[datetime, BarArrays], *, start: datetime, end: datetime) -> BarArrays:
    """The bars of consecutive blocks with start <= time < end, as new arrays."""
    ordered = [blocks[period_start] for period_start in sorted(blocks) if len(blocks[period_start])]
    if not ordered:
        return BarArrays.empty()
    start_ns, end_ns = _nanoseconds(start), _nanoseconds(end)
    first = ordered[0]
    ordered[0] = first.take(slice(np.searchsorted(first.times, start_ns), None))
    last = ordered[-1]  # the first one, cut, when there is one block
    ordered[-1] = last.take(slice(None, np.searchsorted(last.times, end_ns)))
    return BarArrays(*(np.concatenate([getattr(block, name) for block in ordered]) for name in _BLOCK_COLUMNS))


def bars_available(*, security: Security | int, frequency: str) -> tuple[datetime | None, datetime | None, int]:
    """(first bar time, last bar time, number of bars) stored for (security, frequency)."""
    stats = Bar.objects.filter(security_id=_security_id(security), frequency=frequency).aggregate(
        first=Min("time"), last=Max("time"), count=Count("id")
    )
    return stats["first"], stats["last"], stats["count"]


def bar_frequencies_for(security: Security | int) -> list[str]:
    """Frequencies with stored bars for the security, finest first (one index probe each)."""
    security_id = _security_id(security)
    return [
        frequency
        for frequency in BarFrequency.values
        if Bar.objects.filter(security_id=security_id, frequency=frequency).exists()
    ]
