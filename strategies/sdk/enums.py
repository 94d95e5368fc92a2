"""Enumerations shared by strategies, the engine and the database.

Values are lower-case strings so they read well in configs, CSVs and the database; members are
str subclasses, so `AssetType.EQUITY == "EQUITY"` is False but `AssetType("EQUITY")` works via
`_missing_` (schemas and operators write them in upper case).
"""

from enum import Enum


class _StrEnum(str, Enum):
    def __str__(self) -> str:
        return self.value

    @classmethod
    def _missing_(cls, value):
        if isinstance(value, str):
            lowered = value.strip().lower()
            for member in cls:
                if member.value == lowered or member.name.lower() == lowered:
                    return member
        return None


class AssetType(_StrEnum):
    EQUITY = "equity"
    FUTURE = "future"


class BarFrequency(_StrEnum):
    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def seconds(self) -> int:
        return {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[self.value]


class Intent(_StrEnum):
    BUY = "buy"
    SELL = "sell"
    CLOSE = "close"
    BUY_TO_CLOSE = "buy_to_close"
    SELL_TO_CLOSE = "sell_to_close"


class OrderType(_StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(_StrEnum):
    DAY = "day"
    GTC = "gtc"


class OrderState(_StrEnum):
    PENDING = "pending"
    WORKING = "working"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in (OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED)
