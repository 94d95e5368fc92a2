"""Bars as numpy arrays, and their PostgreSQL binary COPY form (Django-free).

Bars travel as columns, never as ORM objects: the CSV parser and the synthetic generator
produce `BarArrays`, the store writes them with one binary COPY into the bar table, and
`bars_as_arrays` reads them back with another. Both binary rows have a fixed width, so a
structured numpy dtype encodes or decodes a million rows in one vectorised step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRICE_FIELDS = ("open", "high", "low", "close")
VALUE_FIELDS = (*PRICE_FIELDS, "volume")


@dataclass(frozen=True, slots=True)
class BarArrays:
    """Bars of one security and frequency, oldest first (same fields as `runs.engine.records.BarArrays`).

    `times` are bar open times as int64 nanoseconds since the epoch, UTC; prices and volume are
    float64.
    """

    times: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.times)

    @classmethod
    def empty(cls) -> BarArrays:
        nothing = np.empty(0, dtype=np.float64)
        return cls(np.empty(0, dtype=np.int64), nothing, nothing, nothing, nothing, nothing)

    def take(self, index) -> BarArrays:
        """The bars at `index` (a boolean mask or integer positions), in that order."""
        return BarArrays(*(getattr(self, name)[index] for name in ("times", *VALUE_FIELDS)))


# PostgreSQL binary COPY: a signature, flags and header-extension length, then per row a
# field count and (length, value) per field, then -1. Big-endian throughout.
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = _SIGNATURE + np.array([0, 0], dtype=">i4").tobytes()
_TRAILER = np.array([-1], dtype=">i2").tobytes()
# timestamptz travels as microseconds since 2000-01-01 UTC.
_PG_EPOCH_US = 946_684_800_000_000

# Reading: (time, open, high, low, close, volume as float8) rows.
_READ_FIELDS = ("time", *VALUE_FIELDS)
_READ_DTYPE = np.dtype(
    [("field_count", ">i2")]
    + [
        pair
        for name in _READ_FIELDS
        for pair in ((f"{name}_length", ">i4"), (name, ">i8" if name == "time" else ">f8"))
    ]
)

# Writing straight into the bar table: NUMERIC's binary form is (digit count, weight, sign,
# display scale, base-10000 digits). PostgreSQL strips leading and trailing zero digits on
# receipt, so every value can use the same digit count and the row keeps a fixed width: prices
# (NUMERIC(20, 8), below 1e12) as 3 whole + 2 fractional digits, volume (NUMERIC(24, 6), below
# 1e18) as 5 + 2.
_NUMERIC_LAYOUT = {"open": (3, 8), "high": (3, 8), "low": (3, 8), "close": (3, 8), "volume": (5, 6)}
_FRACTION_DIGITS = 2  # base-10000 digits after the point: 8 decimal places
COPY_ROWS_PER_CHUNK = 100_000  # about 15 MB per write
FLOAT_SIGNIFICANT_DIGITS = 15


def _write_dtype(frequency_length: int) -> np.dtype:
    fields = [("field_count", ">i2"), ("security_id_length", ">i4"), ("security_id", ">i8")]
    fields += [
        ("frequency_length", ">i4"),
        ("frequency", f"S{frequency_length}"),
        ("time_length", ">i4"),
        ("time", ">i8"),
    ]
    for name, (whole_digits, _) in _NUMERIC_LAYOUT.items():
        fields += [(f"{name}_length", ">i4"), (f"{name}_header", ">i2", (4,))]
        fields += [(f"{name}_digits", ">i2", (whole_digits + _FRACTION_DIGITS,))]
    return np.dtype(fields)


def _numeric_digits(values: np.ndarray, whole_digits: int, scale: int) -> np.ndarray:
    """Base-10000 digits of non-negative `values` rounded to `scale` decimal places and to the
    15 significant digits a float64 carries (as PostgreSQL's float8 -> numeric cast does), so
    99999999999.99 is stored as such rather than as 99999999999.99000549."""
    whole = np.floor(values)
    whole_digit_count = np.floor(np.log10(np.maximum(values, 1e-300))) + 1
    decimals = np.clip(FLOAT_SIGNIFICANT_DIGITS - whole_digit_count, 0, scale).astype(np.int64)
    fraction = (np.rint((values - whole) * 10.0**decimals) * 10.0 ** (scale - decimals)).astype(np.int64)
    whole = whole.astype(np.int64)
    carry = fraction >= 10**scale  # 0.999999999 rounds up to the next whole number
    whole[carry] += 1
    fraction[carry] -= 10**scale
    fraction *= 10 ** (4 * _FRACTION_DIGITS - scale)
    digits = np.empty((len(values), whole_digits + _FRACTION_DIGITS), dtype=np.int64)
    for position in range(whole_digits):
        digits[:, whole_digits - 1 - position] = (whole // 10_000**position) % 10_000
    for position in range(_FRACTION_DIGITS):
        digits[:, whole_digits + _FRACTION_DIGITS - 1 - position] = (fraction // 10_000**position) % 10_000
    return digits


def bar_rows_copy_binary(*, security_id: int, frequency: str, bars: BarArrays):
    """Yield the binary COPY stream of `bars` for
    `COPY securities_bar (security_id, frequency, time, open, high, low, close, volume) FROM STDIN (FORMAT BINARY)`.

    Prices must be positive and below 1e12, volume non-negative and below 1e18 (the columns'
    range); the caller checks.
    """
    encoded_frequency = frequency.encode("ascii")
    dtype = _write_dtype(len(encoded_frequency))
    yield _HEADER
    for start in range(0, len(bars), COPY_ROWS_PER_CHUNK):
        stop = min(start + COPY_ROWS_PER_CHUNK, len(bars))
        rows = np.empty(stop - start, dtype=dtype)
        rows["field_count"] = 3 + len(_NUMERIC_LAYOUT)
        rows["security_id_length"] = 8
        rows["security_id"] = security_id
        rows["frequency_length"] = len(encoded_frequency)
        rows["frequency"] = encoded_frequency
        rows["time_length"] = 8
        rows["time"] = bars.times[start:stop] // 1000 - _PG_EPOCH_US
        for name, (whole_digits, scale) in _NUMERIC_LAYOUT.items():
            digit_count = whole_digits + _FRACTION_DIGITS
            rows[f"{name}_length"] = 8 + 2 * digit_count
            rows[f"{name}_header"] = (digit_count, whole_digits - 1, 0, scale)  # (ndigits, weight, sign +, dscale)
            rows[f"{name}_digits"] = _numeric_digits(getattr(bars, name)[start:stop], whole_digits, scale)
        yield rows.tobytes()
    yield _TRAILER


def bar_arrays_from_copy_binary(data: bytes | bytearray | memoryview) -> BarArrays:
    """Decode the output of `COPY (SELECT time, open::float8, ..., volume::float8 ...) TO STDOUT (FORMAT BINARY)`."""
    data = memoryview(data)
    if bytes(data[: len(_SIGNATURE)]) != _SIGNATURE:
        raise ValueError("not a PostgreSQL binary COPY stream")
    extension_length = int(np.frombuffer(data[15:19], dtype=">i4")[0])
    body = data[19 + extension_length : len(data) - len(_TRAILER)]
    if len(body) % _READ_DTYPE.itemsize:
        raise ValueError("unexpected binary COPY row width: a column is NULL or not time + 5 float8")
    rows = np.frombuffer(body, dtype=_READ_DTYPE)
    if len(rows) and (
        np.any(rows["field_count"] != len(_READ_FIELDS))
        or any(np.any(rows[f"{name}_length"] != 8) for name in _READ_FIELDS)
    ):
        raise ValueError("unexpected binary COPY row layout: expected time + 5 float8, none NULL")
    times = (rows["time"].astype(np.int64) + _PG_EPOCH_US) * 1000
    return BarArrays(times, *(rows[name].astype(np.float64) for name in VALUE_FIELDS))
