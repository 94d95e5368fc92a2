"""StrategyBase and the read-only context the engine hands a strategy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple, Protocol

from strategies.sdk.enums import AssetType, Intent, OrderState, OrderType, TimeInForce


@dataclass(frozen=True, slots=True)
class SecurityInfo:
    symbol: str
    asset_type: AssetType
    name: str
    exchange: str
    currency: str
    tick_size: Decimal
    multiplier: Decimal
    fractionable: bool = False


class PositionView(NamedTuple):
    """What ctx.position() returns: a named tuple, like the events (as immutable as a frozen
    dataclass, and built several times faster: a strategy may ask on every bar)."""

    symbol: str
    asset_type: AssetType
    quantity: Decimal  # signed: negative is short
    average_price: Decimal
    last_price: Decimal | None
    market_value: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class OpenOrderView:
    order_id: int
    symbol: str
    intent: Intent
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    state: OrderState
    filled_quantity: Decimal
    tag: str | None


class Context(Protocol):
    """What a strategy may read. The engine implements it; strategies never write through it."""

    @property
    def now(self) -> datetime: ...

    @property
    def cash(self) -> Decimal: ...

    @property
    def portfolio_value(self) -> Decimal: ...

    def position(self, symbol: str, asset_type: AssetType | str | None = None) -> PositionView: ...

    def open_orders(self, symbol: str | None = None) -> list[OpenOrderView]: ...

    def security(self, symbol: str, asset_type: AssetType | str | None = None) -> SecurityInfo: ...

    @property
    def log(self) -> logging.Logger: ...


class StrategyBase:
    """Subclass as `class Strategy(StrategyBase)` in strategy.py.

    Handlers are synchronous and return a list of actions (or None for nothing). `on_start` is
    required: it subscribes to data and schedules timers.
    """

    def __init__(self, ctx: Context, config: dict):
        self.ctx = ctx
        self.config = config

    def on_start(self, now: datetime):
        raise NotImplementedError("Strategy.on_start must be implemented: return [Subscribe(...)]")

    def on_bar(self, event):
        return None

    def on_order_update(self, event):
        return None

    def on_timer(self, event):
        return None

    def on_stop(self, now: datetime):
        return None
