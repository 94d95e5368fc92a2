"""Decimal conversions shared by the engine.

Money, prices and quantities are Decimal, kept to the database's 8 decimal places, so what the
recorder stores adds up exactly as it did in the engine (Σ ledger amounts == cash).
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation

PLACES = Decimal("0.00000001")
ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal(10000)


def money(value: Decimal) -> Decimal:
    """Round an amount (or a price) to 8 places, half to even."""
    return value.quantize(PLACES, ROUND_HALF_EVEN)


def plain(value: Decimal) -> str:
    """A Decimal for people: no exponent, no trailing zeros (5, 0.25, 1200)."""
    text = format(value.normalize(), "f")
    return text


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of `step` not above `value` (value >= 0)."""
    return value.quantize(step, ROUND_DOWN) if step < ONE else value.to_integral_value(ROUND_DOWN)


def price_units(value: float) -> int:
    """A bar price in units of 1e-8 (123.456 -> 12345600000): the float rounded to 8 places.

    Integer maths is how the hot loop values positions without Decimal work; prices above
    ~90 million would lose precision in the float product, far beyond any traded price."""
    return round(value * 100_000_000)


def from_units(units: int) -> Decimal:
    return Decimal(units).scaleb(-8)


def price_from_float(value: float) -> Decimal:
    """A bar price as Decimal, rounded to 8 places (123.456 stays 123.456, not its binary
    expansion)."""
    return Decimal(round(value * 100_000_000)).scaleb(-8)


def to_units(amount: Decimal) -> int:
    """An amount with at most 8 places in units of 1e-8."""
    return int(amount.scaleb(8))


def to_decimal(value) -> Decimal:
    """int, float (by its shortest repr, so 0.1 stays 0.1), Decimal or numeric text to Decimal.

    Raises ValueError saying what was wrong: booleans, other types, NaN and infinity are refused.
    """
    if isinstance(value, bool):
        raise ValueError("is a boolean, not a number")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"'{value}' is not a number") from None
    else:
        raise ValueError(f"is a {type(value).__name__}, not a number")
    if not number.is_finite():
        raise ValueError("is not a finite number")
    return number
