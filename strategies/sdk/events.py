"""Events the engine delivers to a strategy's handlers. Prices are floats (indicator maths);
quantities in order updates are Decimal (exact)."""

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from strategies.sdk.enums import AssetType, BarFrequency, OrderState


class BarEvent(NamedTuple):
    """One bar, delivered at its close (`ctx.now`); `time` is the bar's open time, UTC.

    Events are named tuples rather than dataclasses: the engine makes one per bar, and a tuple
    is built several times faster than a frozen dataclass while staying just as immutable.
    """

    symbol: str
    asset_type: AssetType
    frequency: BarFrequency
    time: datetime  # bar open time, UTC
    open: float
    high: float
    low: float
    close: float
    volume: float


class OrderUpdateEvent(NamedTuple):
    """An order changed state or filled. `filled_quantity` and `average_fill_price` are the
    totals so far; `last_fill_*` describe the fill that caused this update (None otherwise);
    `reason` says why an order was rejected, cancelled or expired; `time` is when it happened."""

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


class TimerEvent(NamedTuple):
    name: str
    time: datetime
