"""Number formats of the console: money, signed P&L, percentages and ratios. Missing values
(None: a metric undefined for the data) show as an en dash."""

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()
DASH = "–"


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


@register.filter
def money(value, places: int = 2) -> str:
    number = _decimal(value)
    if number is None:
        return DASH
    return f"{number:,.{int(places)}f}"


@register.filter
def signed_money(value) -> str:
    number = _decimal(value)
    if number is None:
        return DASH
    sign = "+" if number > 0 else "−" if number < 0 else ""
    return f"{sign}{abs(number):,.2f}"


@register.filter
def percent(value, places: int = 2) -> str:
    """A fraction as a percentage: 0.1234 → 12.34 %."""
    number = _decimal(value)
    if number is None:
        return DASH
    return f"{number * 100:,.{int(places)}f} %".replace("-", "−")


@register.filter
def ratio(value) -> str:
    number = _decimal(value)
    if number is None:
        return DASH
    return f"{number:,.2f}".replace("-", "−")


@register.filter
def quantity(value) -> str:
    """A quantity without the column's padding zeros: 10, 0.5, −3."""
    number = _decimal(value)
    if number is None:
        return DASH
    text = format(number.normalize(), "f")
    whole, _, fraction = text.partition(".")
    whole = f"{int(whole):,}" if whole not in ("-0", "") else whole
    return (whole + ("." + fraction if fraction else "")).replace("-", "−")


@register.filter
def sign_class(value) -> str:
    """CSS class for a signed figure: "pos", "neg" or ""."""
    number = _decimal(value)
    if number is None or number == 0:
        return ""
    return "pos" if number > 0 else "neg"
