"""Events the engine delivers to a strategy's handlers. Prices are floats (indicator maths);
quantities in order updates are Decimal (exact)."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from strategies.sdk.enums import AssetType, BarFrequency, OrderState


@dataclass(frozen=True, slots=True)
class BarEvent:
    symbol: str
    asset_type: AssetType
    frequency: BarFrequency
    time: datetime  # bar open time, UTC
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class OrderUpdateEvent:
    order_id: int
    tag: str | None
    symbol: str
    state: OrderState
    filled_quantity: Decimal
    average_fill_price: Decimal | None
    last_fill_quantity: Decimal | None
    last_fill_price: Decimal | None
    reason: str | None
    time: datetime | None = None


@dataclass(frozen=True, slots=True)
class TimerEvent:
    name: str
    time: datetime
