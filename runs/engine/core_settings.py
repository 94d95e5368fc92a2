"""The `core` section of a run config (product.md §5): platform settings, validated once.

`CoreSettings.from_config` refuses anything it does not understand with a message per field
that names the fix; `CoreSettings.json_schema()` describes the same section for the console's
"Advanced" form, so the form and the validation cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from runs.engine.decimals import ZERO, money, to_decimal
from strategies.sdk.enums import AssetType

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
CURRENCY = re.compile(r"[A-Z]{3}")


class CoreSettingsError(Exception):
    """`errors` maps a field ("starting_cash", "commission.bps", ...) to what is wrong and the fix."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.errors.items()))


class Benchmark(NamedTuple):
    symbol: str
    asset_type: AssetType


@dataclass(frozen=True)
class Commission:
    """Per share (per contract for futures) with a minimum per order, or basis points of the
    traded notional; all None means no commission."""

    per_share: Decimal | None = None
    minimum: Decimal = ZERO
    bps: Decimal | None = None

    @property
    def is_free(self) -> bool:
        return not self.per_share and not self.bps and not self.minimum

    def for_fill(self, *, quantity: Decimal, notional: Decimal, order_quantity_after: Decimal, charged: Decimal) -> Decimal:
        """Commission of one fill. The per-share minimum applies per order, not per fill, so a
        partly filled order pays it once: each fill is charged what the order's total owes
        after it, less what was charged already."""
        if self.bps is not None:
            return money(notional * self.bps / 10000)
        if self.per_share is not None:
            owed = max(order_quantity_after * self.per_share, self.minimum)
            return money(max(owed - charged, ZERO))
        return ZERO


@dataclass(frozen=True)
class CoreSettings:
    starting_cash: Decimal = Decimal(100000)
    currency: str = "USD"
    commission: Commission = field(default_factory=Commission)
    slippage_bps: Decimal = ZERO
    allow_short: bool = False
    max_leverage: Decimal = Decimal(1)
    max_order_value: Decimal | None = None
    max_position_value: Decimal | None = None
    max_volume_participation: Decimal | None = None
    log_level: str = "INFO"
    benchmark: Benchmark | None = None
    handler_timeout_seconds: float = 5.0

    @classmethod
    def from_config(cls, config: dict | None) -> CoreSettings:
        """Validate a `core` section; missing fields take their defaults.
        Raises CoreSettingsError with one message per bad field (unknown fields included)."""
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise CoreSettingsError({"core": "must be an object of settings, e.g. {\"starting_cash\": 100000}"})
        errors: dict[str, str] = {}
        values: dict = {}
        for name in sorted(set(config) - set(_FIELDS)):
            errors[name] = f"unknown setting: remove it (known settings: {', '.join(_FIELDS)})"
        for name, parse in _FIELDS.items():
            raw = config.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[name] = parse(raw)
            except _FieldErrors as exc:
                errors.update(exc.errors)
            except ValueError as exc:
                errors[name] = str(exc)
        if errors:
            raise CoreSettingsError(errors)
        return cls(**values)

    @classmethod
    def json_schema(cls) -> dict:
        """JSON Schema (draft 7) of the `core` section, properties in display order."""
        return {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "Core settings",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "starting_cash": {
                    "type": "number", "title": "Starting cash", "default": 100000, "exclusiveMinimum": 0,
                    "description": "Cash deposited at the start of the run, in the run's currency.",
                },
                "currency": {
                    "type": "string", "title": "Currency", "default": "USD", "pattern": "^[A-Z]{3}$",
                    "description": "ISO 4217 code of the account currency.",
                },
                "commission": {
                    "title": "Commission",
                    "description": "Per share (per contract for futures) with a minimum per order, or basis points of the traded notional. Leave empty for none.",
                    "default": None,
                    "oneOf": [
                        {"type": "null", "title": "None"},
                        {
                            "type": "object", "title": "Per share", "additionalProperties": False, "required": ["per_share"],
                            "properties": {
                                "per_share": {"type": "number", "minimum": 0, "title": "Per share", "description": "e.g. 0.005"},
                                "minimum": {"type": "number", "minimum": 0, "default": 0, "title": "Minimum per order", "description": "e.g. 1.00"},
                            },
                        },
                        {
                            "type": "object", "title": "Basis points", "additionalProperties": False, "required": ["bps"],
                            "properties": {"bps": {"type": "number", "minimum": 0, "title": "Basis points of notional", "description": "1 bp = 0.01 %"}},
                        },
                    ],
                },
                "slippage_bps": {
                    "type": "number", "title": "Slippage (bps)", "default": 0, "minimum": 0, "exclusiveMaximum": 10000,
                    "description": "Market and stop fills are moved this many basis points against the trader.",
                },
                "allow_short": {
                    "type": "boolean", "title": "Allow short selling", "default": False,
                    "description": "When off, a sell that would leave a negative position is rejected.",
                },
                "max_leverage": {
                    "type": "number", "title": "Maximum leverage", "default": 1.0, "exclusiveMinimum": 0, "maximum": 100,
                    "description": "Gross exposure (futures at contract notional) may not exceed this multiple of the portfolio value; orders that would exceed it are rejected.",
                },
                "max_order_value": {
                    "type": ["number", "null"], "title": "Maximum order value", "default": None, "exclusiveMinimum": 0,
                    "description": "Optional risk limit: an order that adds exposure worth more than this is rejected.",
                },
                "max_position_value": {
                    "type": ["number", "null"], "title": "Maximum position value", "default": None, "exclusiveMinimum": 0,
                    "description": "Optional risk limit: a fill that would take a position's value above this is rejected.",
                },
                "max_volume_participation": {
                    "type": ["number", "null"], "title": "Maximum volume participation", "default": None,
                    "exclusiveMinimum": 0, "maximum": 1,
                    "description": "Optional: the fraction of a bar's volume one order may fill in that bar; the rest fills in later bars.",
                },
                "log_level": {
                    "type": "string", "title": "Log level", "default": "INFO", "enum": list(LOG_LEVELS),
                    "description": "Strategy log lines below this level are dropped.",
                },
                "benchmark": {
                    "title": "Benchmark",
                    "description": "Optional security the performance is compared with, e.g. SPX.",
                    "default": None,
                    "oneOf": [
                        {"type": "null"},
                        {"type": "string", "x-lookout-type": "symbol", "x-lookout-asset-type": "EQUITY"},
                        {
                            "type": "object", "additionalProperties": False, "required": ["symbol"],
                            "properties": {
                                "symbol": {"type": "string"},
                                "asset_type": {"type": "string", "enum": ["EQUITY", "FUTURE"], "default": "EQUITY"},
                            },
                        },
                    ],
                },
                "handler_timeout_seconds": {
                    "type": "number", "title": "Handler timeout (seconds)", "default": 5, "exclusiveMinimum": 0, "maximum": 3600,
                    "description": "A strategy handler running longer than this is reported; in a worker's main thread it is interrupted and the run ends in error.",
                },
            },
        }


class _FieldErrors(Exception):
    def __init__(self, errors: dict[str, str]):
        self.errors = errors


def _number(raw, *, example: str) -> Decimal:
    try:
        return to_decimal(raw)
    except ValueError as exc:
        raise ValueError(f"{exc}: enter a number, e.g. {example}") from None


def _positive(example: str, *, at_most: Decimal | None = None, money_value: bool = False):
    def parse(raw) -> Decimal:
        value = _number(raw, example=example)
        if value <= 0:
            raise ValueError(f"must be greater than 0, e.g. {example}")
        if at_most is not None and value > at_most:
            raise ValueError(f"must be at most {at_most}, e.g. {example}")
        return money(value) if money_value else value

    return parse


def _slippage(raw) -> Decimal:
    value = _number(raw, example="2")
    if value < 0 or value >= 10000:
        raise ValueError("must be between 0 and 10000 basis points (1 bp = 0.01 %), e.g. 2")
    return value


def _currency(raw) -> str:
    if not isinstance(raw, str) or not CURRENCY.fullmatch(raw.strip().upper()):
        raise ValueError("must be a three-letter currency code, e.g. USD")
    return raw.strip().upper()


def _boolean(raw) -> bool:
    if not isinstance(raw, bool):
        raise ValueError("must be true or false")
    return raw


def _log_level(raw) -> str:
    level = str(raw).strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _timeout(raw) -> float:
    value = _number(raw, example="5")
    if not 0 < value <= 3600:
        raise ValueError("must be more than 0 and at most 3600 seconds, e.g. 5")
    return float(value)


def _commission(raw) -> Commission:
    if not isinstance(raw, dict):
        raise ValueError('must be an object: {"per_share": "0.005", "minimum": "1.00"} or {"bps": "1.0"}')
    unknown = sorted(set(raw) - {"per_share", "minimum", "bps"})
    if unknown:
        raise _FieldErrors(
            {f"commission.{name}": "unknown commission field: use per_share (with minimum) or bps" for name in unknown}
        )
    present = {name: value for name, value in raw.items() if value is not None and value != ""}
    if "bps" in present and ({"per_share", "minimum"} & set(present)):
        raise ValueError("choose one model: per_share (with minimum) or bps, not both")
    if "minimum" in present and "per_share" not in present:
        raise _FieldErrors({"commission.per_share": "is required with minimum, e.g. 0.005"})
    errors, values = {}, {}
    for name, example in (("per_share", "0.005"), ("minimum", "1.00"), ("bps", "1.0")):
        if name not in present:
            continue
        try:
            value = _number(present[name], example=example)
            if value < 0:
                raise ValueError(f"must not be negative, e.g. {example}")
            values[name] = value
        except ValueError as exc:
            errors[f"commission.{name}"] = str(exc)
    if errors:
        raise _FieldErrors(errors)
    return Commission(**values)


def _benchmark(raw) -> Benchmark:
    if isinstance(raw, str):
        symbol, asset_type = raw, AssetType.EQUITY
    elif isinstance(raw, dict):
        unknown = sorted(set(raw) - {"symbol", "asset_type"})
        if unknown:
            raise ValueError(f"unknown field {', '.join(unknown)}: give {{\"symbol\": \"SPX\", \"asset_type\": \"EQUITY\"}}")
        symbol = raw.get("symbol")
        try:
            asset_type = AssetType(raw.get("asset_type") or AssetType.EQUITY)
        except ValueError:
            raise ValueError("asset_type must be EQUITY or FUTURE") from None
    else:
        raise ValueError('must be a symbol, e.g. "SPX", or {"symbol": "SPX", "asset_type": "EQUITY"}')
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError('needs a symbol, e.g. "SPX"')
    return Benchmark(symbol.strip().upper(), asset_type)


_FIELDS = {
    "starting_cash": _positive("100000", money_value=True),
    "currency": _currency,
    "commission": _commission,
    "slippage_bps": _slippage,
    "allow_short": _boolean,
    "max_leverage": _positive("1.0", at_most=Decimal(100)),
    "max_order_value": _positive("50000", money_value=True),
    "max_position_value": _positive("100000", money_value=True),
    "max_volume_participation": _positive("0.1", at_most=Decimal(1)),
    "log_level": _log_level,
    "benchmark": _benchmark,
    "handler_timeout_seconds": _timeout,
}
