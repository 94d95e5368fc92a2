"""The public strategy SDK: what a strategy's code imports.

Django-free by design: the same classes drive Backtest, Paper and Live, and strategies can be
unit-tested on plain data. Import everything from here::

    from strategies.sdk import StrategyBase, Subscribe, PlaceOrder, Intent, BarFrequency, AssetType
"""

from strategies.sdk import indicators
from strategies.sdk.actions import (
    Action,
    CancelAllOrders,
    CancelOrder,
    DepositCash,
    PlaceOrder,
    ScheduleTimer,
    Subscribe,
)
from strategies.sdk.base import Context, OpenOrderView, PositionView, SecurityInfo, StrategyBase
from strategies.sdk.enums import (
    AssetType,
    BarFrequency,
    Intent,
    OrderState,
    OrderType,
    TimeInForce,
)
from strategies.sdk.events import BarEvent, OrderUpdateEvent, TimerEvent

__all__ = [
    "Action",
    "AssetType",
    "BarEvent",
    "BarFrequency",
    "CancelAllOrders",
    "CancelOrder",
    "Context",
    "DepositCash",
    "Intent",
    "OpenOrderView",
    "OrderState",
    "OrderType",
    "OrderUpdateEvent",
    "PlaceOrder",
    "PositionView",
    "ScheduleTimer",
    "SecurityInfo",
    "StrategyBase",
    "Subscribe",
    "TimeInForce",
    "TimerEvent",
    "indicators",
]
