"""Actions a handler returns. The engine validates each one; an invalid action becomes an
`invalid_action` issue naming the field, never a crash of the run."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from strategies.sdk.enums import AssetType, BarFrequency, Intent, OrderType, TimeInForce

Number = int | float | Decimal


@dataclass(frozen=True, slots=True)
class Subscribe:
    symbol: str
    asset_type: AssetType | str = AssetType.EQUITY
    frequency: BarFrequency | str = BarFrequency.DAY


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Exactly one of `quantity` and `notional`. A notional order is sized when it fills: the
    largest whole quantity (fractional where the security allows it) whose cost, commission
    included, fits in the notional."""

    symbol: str
    intent: Intent | str
    quantity: Number | None = None
    notional: Number | None = None
    order_type: OrderType | str = OrderType.MARKET
    limit_price: Number | None = None
    stop_price: Number | None = None
    time_in_force: TimeInForce | str = TimeInForce.DAY
    tag: str | None = None
    asset_type: AssetType | str | None = None  # only needed when a symbol is subscribed under two asset types


@dataclass(frozen=True, slots=True)
class CancelOrder:
    order_id: int


@dataclass(frozen=True, slots=True)
class CancelAllOrders:
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    """Either `every` (a repeating interval) or `at` (a single time, UTC)."""

    name: str
    every: timedelta | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DepositCash:
    amount: Number


Action = Subscribe | PlaceOrder | CancelOrder | CancelAllOrders | ScheduleTimer | DepositCash
