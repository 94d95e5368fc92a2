"""What the engine hands its recorder: plain, Django-free records.

The engine batches them and calls `Recorder.record(batch)` about once a second and once at the
end, so the database is touched in batches at the engine's edge, never per bar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple, Protocol

import numpy as np

from strategies.sdk.base import SecurityInfo
from strategies.sdk.enums import AssetType, BarFrequency, Intent, OrderState, OrderType, TimeInForce

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class BarArrays:
    """Bars of one (symbol, asset type, frequency), oldest first.

    `times` are bar open times as int64 nanoseconds since the epoch, UTC; prices and volume
    are float64. Built straight from the database without ORM objects.
    """

    times: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.times)


class MarketData(Protocol):
    """Where the engine gets securities and stored bars (the runner implements it over the DB)."""

    def security(self, symbol: str, asset_type: AssetType) -> SecurityInfo | None: ...

    def bars(self, symbol: str, asset_type: AssetType, frequency: BarFrequency, start: datetime, end: datetime) -> BarArrays: ...


@dataclass(slots=True)
class OrderRecord:
    """Latest snapshot of an order (sent again whenever it changes)."""

    order_id: int
    client_order_id: str
    symbol: str
    asset_type: AssetType
    intent: Intent
    side: str  # "buy" | "sell" | "" while not yet known (CLOSE of a flat position)
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    state: OrderState
    filled_quantity: Decimal
    average_fill_price: Decimal | None
    commission: Decimal
    reject_reason: str
    tag: str
    created_at: datetime
    updated_at: datetime
    broker_order_id: str = ""


@dataclass(slots=True)
class FillRecord:
    execution_id: str
    order_id: int
    time: datetime
    symbol: str
    asset_type: AssetType
    side: str  # "buy" | "sell"
    quantity: Decimal
    price: Decimal
    commission: Decimal


@dataclass(slots=True)
class PositionRecord:
    symbol: str
    asset_type: AssetType
    quantity: Decimal  # signed
    average_price: Decimal
    last_price: Decimal | None
    market_value: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    updated_at: datetime


@dataclass(slots=True)
class LedgerRecord:
    time: datetime
    kind: str  # "deposit" | "trade" | "commission" | "variation_margin"
    amount: Decimal
    balance: Decimal
    order_id: int | None = None
    description: str = ""


class EquityPoint(NamedTuple):
    time: datetime  # the bar's close time
    cash: float
    portfolio_value: float


@dataclass(slots=True)
class EquityPoints:
    """Equity points since the previous batch, as columns: one per bar (marked at its close).
    Floats: the curve is for charts and metrics; the ledger itself stays Decimal."""

    times: np.ndarray  # int64 ns since the epoch, UTC, increasing
    values: np.ndarray  # float64 portfolio value
    cash: np.ndarray  # float64 cash

    @classmethod
    def empty(cls) -> EquityPoints:
        return cls(np.empty(0, dtype=np.int64), np.empty(0), np.empty(0))

    def __len__(self) -> int:
        return len(self.times)

    def __iter__(self):
        for time_ns, cash, value in zip(self.times.tolist(), self.cash.tolist(), self.values.tolist(), strict=True):
            yield EquityPoint(EPOCH + timedelta(microseconds=time_ns // 1000), cash, value)


@dataclass(slots=True)
class LogRecord:
    sequence: int
    time: datetime
    level: str  # "DEBUG" | "INFO" | "WARNING" | "ERROR"
    message: str


@dataclass(slots=True)
class IssueRecord:
    """`fingerprint` identifies repeats within a run; `count` is the number of new occurrences
    in this batch (the recorder adds it to the stored count)."""

    code: str
    component: str  # strategy | simulation | data | broker | platform
    classification: str  # user | system
    severity: str  # info | warning | error
    fingerprint: str
    message: str
    detail: str = ""
    count: int = 1
    first_seen: datetime | None = None
    last_seen: datetime | None = None


@dataclass(slots=True)
class RecordBatch:
    orders: list[OrderRecord] = field(default_factory=list)
    fills: list[FillRecord] = field(default_factory=list)
    positions: list[PositionRecord] = field(default_factory=list)  # every position touched since last batch
    ledger: list[LedgerRecord] = field(default_factory=list)
    equity: EquityPoints = field(default_factory=EquityPoints.empty)
    logs: list[LogRecord] = field(default_factory=list)
    issues: list[IssueRecord] = field(default_factory=list)
    progress: int = 0  # 0-100
    bars_processed: int = 0
    cash: Decimal | None = None
    portfolio_value: Decimal | None = None
    final: bool = False


class Recorder(Protocol):
    def record(self, batch: RecordBatch) -> None: ...
