"""The public SDK surface: every name product.md §3 lists, enum parsing, immutable events and
actions, and what StrategyBase does by default."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

import strategies.sdk as sdk
from strategies.sdk import (
    AssetType,
    BarEvent,
    BarFrequency,
    Intent,
    OrderState,
    OrderType,
    OrderUpdateEvent,
    PlaceOrder,
    ScheduleTimer,
    StrategyBase,
    Subscribe,
    TimeInForce,
    TimerEvent,
)

NOW = datetime(2020, 1, 2, 15, tzinfo=UTC)


def test_every_documented_name_is_exported():
    documented = {
        "StrategyBase", "Context", "BarEvent", "OrderUpdateEvent", "TimerEvent", "Subscribe", "PlaceOrder", "CancelOrder",
        "CancelAllOrders", "ScheduleTimer", "DepositCash", "AssetType", "BarFrequency", "Intent", "OrderType",
        "TimeInForce", "OrderState", "PositionView", "OpenOrderView", "SecurityInfo", "indicators",
    }
    assert documented <= set(sdk.__all__)
    assert all(hasattr(sdk, name) for name in sdk.__all__)


def test_enums_accept_the_upper_case_names_schemas_use():
    assert AssetType("EQUITY") is AssetType.EQUITY and AssetType(" future ") is AssetType.FUTURE
    assert BarFrequency("Minute") is BarFrequency.MINUTE and BarFrequency.HOUR.seconds == 3600
    assert Intent("SELL_TO_CLOSE") is Intent.SELL_TO_CLOSE
    assert OrderType("stop_limit") is OrderType.STOP_LIMIT and TimeInForce("GTC") is TimeInForce.GTC
    assert str(OrderState.PARTIALLY_FILLED) == "partially_filled"
    assert {s for s in OrderState if s.is_terminal} == {OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED}
    with pytest.raises(ValueError):
        Intent("hold")


def test_events_are_immutable_and_keep_their_field_names():
    bar = BarEvent("MSFT", AssetType.EQUITY, BarFrequency.DAY, NOW, 1.0, 2.0, 0.5, 1.5, 1000.0)
    assert (bar.symbol, bar.close, bar.time) == ("MSFT", 1.5, NOW)
    with pytest.raises(AttributeError):
        bar.close = 3.0
    assert bar._replace(close=2.0).close == 2.0
    update = OrderUpdateEvent(1, "entry", "MSFT", OrderState.FILLED, Decimal(10), Decimal("1.5"), Decimal(10), Decimal("1.5"), None)
    assert update.time is None and update.state.is_terminal
    timer = TimerEvent("rebalance", NOW)
    with pytest.raises(AttributeError):
        timer.name = "other"


def test_actions_are_immutable_named_tuples_with_the_documented_defaults():
    order = PlaceOrder("MSFT", Intent.BUY, quantity=10)
    assert (order.order_type, order.time_in_force, order.notional, order.limit_price, order.tag) == (
        OrderType.MARKET, TimeInForce.DAY, None, None, None
    )
    with pytest.raises(AttributeError):
        order.quantity = 5
    assert order._replace(quantity=5) == PlaceOrder("MSFT", Intent.BUY, quantity=5)
    assert Subscribe("MSFT") == Subscribe("MSFT", AssetType.EQUITY, BarFrequency.DAY)
    timer = ScheduleTimer("rebalance", every=timedelta(hours=1))
    assert timer.at is None


def test_strategy_base_requires_on_start_and_does_nothing_else_by_default():
    strategy = StrategyBase(ctx=None, config={"x": 1})
    assert strategy.config == {"x": 1}
    with pytest.raises(NotImplementedError, match="on_start must be implemented"):
        strategy.on_start(NOW)
    assert strategy.on_bar(None) is None and strategy.on_order_update(None) is None
    assert strategy.on_timer(None) is None and strategy.on_stop(NOW) is None
