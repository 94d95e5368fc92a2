"""Reads of the security master and market data: lookups (product.md §12) and bars as arrays."""

from __future__ import annotations

import bisect
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from django.db import connection
from django.db.models import Case, Count, IntegerField, Max, Min, Q, Value, When
from django.db.models.functions import Length, Lower

from securities.bar_arrays import VALUE_FIELDS, BarArrays, bar_arrays_from_copy_binary
from securities.models import AssetType, Bar, BarFrequency, Security

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
    (times int64 ns UTC; prices and volume float64), without building ORM objects."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes (UTC)")
    security_id = _security_id(security)
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
        times, *values = zip(*rows, strict=True)
        nanoseconds = (
            pd.to_datetime(pd.Series(times), format="ISO8601").to_numpy(dtype="datetime64[ns]").astype(np.int64)
        )
        bars = BarArrays(nanoseconds, *(np.asarray(column, dtype=np.float64) for column in values))
    if np.any(np.diff(bars.times) < 0):
        bars = bars.take(np.argsort(bars.times, kind="stable"))
    return bars


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
