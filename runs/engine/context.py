"""What a strategy sees: the read-only `ctx`, and its log (ctx.log and print()) stamped with
simulated time."""

from __future__ import annotations

import io
import logging
from collections import deque
from datetime import datetime
from decimal import Decimal

from runs.engine.feed import Instrument, from_ns
from runs.engine.records import LogRecord
from strategies.sdk.base import OpenOrderView, PositionView, SecurityInfo
from strategies.sdk.enums import AssetType

MAX_LOG_MESSAGE = 4000
_LEVEL_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARNING", logging.ERROR: "ERROR"}


class LogSink:
    """The newest `max_lines` lines since the last batch (older ones are dropped here already,
    so a strategy printing in a tight loop cannot exhaust memory)."""

    def __init__(self, *, max_lines: int, clock):
        self.pending: deque[LogRecord] = deque(maxlen=max(1, max_lines))
        self.sequence = 0
        self.clock = clock  # () -> datetime: simulated now

    def add(self, level: int, message: str) -> None:
        self.sequence += 1
        if len(message) > MAX_LOG_MESSAGE:
            message = message[:MAX_LOG_MESSAGE] + " …(truncated)"
        name = _LEVEL_NAMES.get(level) or ("ERROR" if level > logging.ERROR else "DEBUG")
        self.pending.append(LogRecord(sequence=self.sequence, time=self.clock(), level=name, message=message))

    def drain(self) -> list[LogRecord]:
        lines = list(self.pending)
        self.pending.clear()
        return lines


class _SinkHandler(logging.Handler):
    def __init__(self, sink: LogSink):
        super().__init__()
        self.sink = sink
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.add(record.levelno, self.format(record))


def strategy_logger(sink: LogSink, level: str) -> logging.Logger:
    """A logger outside logging's global tree: lines go to this run's sink only."""
    logger = logging.Logger("strategy", level=getattr(logging, level))
    logger.propagate = False
    logger.addHandler(_SinkHandler(sink))
    return logger


class PrintCapture(io.TextIOBase):
    """Stands in for sys.stdout while the strategy runs: each printed line becomes an INFO line."""

    def __init__(self, sink: LogSink, level: str):
        self.sink = sink
        self.enabled = getattr(logging, level) <= logging.INFO
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not self.enabled:
            return len(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.sink.add(logging.INFO, line)
        return len(text)

    def finish(self) -> None:
        if self._partial:
            self.sink.add(logging.INFO, self._partial)
            self._partial = ""


class EngineContext:
    """The strategy's read-only view (strategies.sdk.base.Context). `now` is derived from the
    engine's simulated clock only when asked for."""

    def __init__(self, *, kernel):
        self._kernel = kernel
        self.now_ns = 0
        self._now_for = -1
        self._now: datetime | None = None
        self.log: logging.Logger | None = None

    @property
    def now(self) -> datetime:
        if self._now_for != self.now_ns:
            self._now = from_ns(self.now_ns)
            self._now_for = self.now_ns
        return self._now

    @property
    def cash(self) -> Decimal:
        return self._kernel.portfolio.cash

    @property
    def portfolio_value(self) -> Decimal:
        return self._kernel.portfolio.value()

    def position(self, symbol: str, asset_type: AssetType | str | None = None) -> PositionView:
        instrument = self._instrument(symbol, asset_type)
        if isinstance(instrument, Instrument):
            return self._kernel.portfolio.view(instrument)
        zero = Decimal(0)
        return PositionView(str(symbol).strip().upper(), instrument, zero, zero, None, zero, zero, zero)

    def open_orders(self, symbol: str | None = None) -> list[OpenOrderView]:
        wanted = str(symbol).strip().upper() if symbol is not None else None
        return [
            OpenOrderView(
                order_id=order.order_id,
                symbol=order.symbol,
                intent=order.intent,
                order_type=order.order_type,
                time_in_force=order.time_in_force,
                quantity=order.quantity,
                notional=order.notional,
                limit_price=order.limit_price,
                stop_price=order.stop_price,
                state=order.state,
                filled_quantity=order.filled_quantity,
                tag=order.tag,
            )
            for order in self._kernel.broker.open_orders.values()
            if wanted is None or order.symbol == wanted
        ]

    def security(self, symbol: str, asset_type: AssetType | str | None = None) -> SecurityInfo:
        instrument = self._instrument(symbol, asset_type)
        if isinstance(instrument, Instrument):
            return instrument.security
        info = self._kernel.market_data.security(str(symbol).strip().upper(), instrument)
        if info is None:
            raise LookupError(f"no security {str(symbol).strip().upper()} ({instrument}) in the security master: check the symbol")
        return info

    def _instrument(self, symbol, asset_type) -> Instrument | AssetType:
        """The subscribed instrument, or (when not subscribed) the asset type to look it up by."""
        key = str(symbol).strip().upper()
        if asset_type is not None:
            asset = AssetType(asset_type)
            return self._kernel.instruments.get((key, asset), asset)
        matches = self._kernel.instruments_by_symbol.get(key, ())
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise LookupError(f"{key} is subscribed as both equity and future: pass asset_type")
        return AssetType.EQUITY

    def __repr__(self) -> str:
        return f"<ctx now={self.now.isoformat()} cash={self.cash}>"
