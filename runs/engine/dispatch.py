"""The kernel every execution mode shares: the strategy, its context, the broker and portfolio,
timers, order-update delivery, action validation, diagnostics and record batching.

A mode supplies the clock and the bars (Backtest: stored bars replayed as fast as possible, see
backtest.py) and calls in here; the rules of what a strategy may do live in one place.
"""

from __future__ import annotations

import gc
import heapq
import time as wallclock
from array import array
from collections import deque
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np

from runs.engine import diagnostics
from runs.engine.broker import (
    CLOSE,
    LIMIT,
    NEVER,
    RISK_LIMIT,
    STOP,
    STOP_LIMIT,
    BrokerListener,
    EngineBroker,
    Order,
    SimulatedBroker,
)
from runs.engine.context import EngineContext, LogSink, strategy_logger
from runs.engine.core_settings import CoreSettings
from runs.engine.decimals import money, plain, to_decimal
from runs.engine.diagnostics import IssueCollector, IssueKind, strategy_traceback
from runs.engine.feed import Instrument, Subscription, from_ns, to_ns
from runs.engine.ledger import Portfolio
from runs.engine.records import EquityPoints, MarketData, RecordBatch, Recorder
from runs.engine.sessions import calendar_for, sessions_between
from runs.engine.watchdog import HandlerTimeout
from strategies.sdk.actions import CancelAllOrders, CancelOrder, DepositCash, PlaceOrder, ScheduleTimer, Subscribe
from strategies.sdk.base import StrategyBase
from strategies.sdk.enums import AssetType, BarFrequency, Intent, OrderType, TimeInForce
from strategies.sdk.events import OrderUpdateEvent, TimerEvent

ACTION_TYPES = (Subscribe, PlaceOrder, CancelOrder, CancelAllOrders, ScheduleTimer, DepositCash)
# More order updates than this while handling one event means handlers keep answering each
# other's updates with new orders: stop the run rather than spin forever.
MAX_UPDATES_PER_EVENT = 10_000
MAX_TAG_LENGTH = 100
TARGET_CHECK_SECONDS = 0.05
STOP_POLL_SECONDS = 1.0
FULL_COLLECTION_EVERY = 60  # batches
YOUNG_OBJECTS_BEFORE_COLLECTING = 100_000


class RunEnded(Exception):
    """Unwinds the run after the reason has been recorded as an issue."""


class StopRequested(Exception):
    pass


class InvalidAction(Exception):
    def __init__(self, field: str, rule: str, message: str):
        self.field, self.rule, self.message = field, rule, message
        super().__init__(message)


class Kernel(BrokerListener):
    def __init__(
        self,
        *,
        core: CoreSettings,
        market_data: MarketData,
        recorder: Recorder,
        start: datetime,
        end: datetime,
        should_stop,
        file_prefix: str,
        flush_interval_seconds: float,
        log_max_lines: int,
        calendar: str | None,
        client_order_prefix: str,
        broker_factory=None,
    ):
        """`broker_factory(kernel) -> EngineBroker` (runs.engine.broker) swaps the simulated
        broker for another with the same surface (a real account); None simulates fills."""
        self.core = core
        self.market_data = market_data
        self.recorder = recorder
        self.start, self.end = start, end
        self.start_ns, self.end_ns = to_ns(start), to_ns(end)
        self.should_stop = should_stop
        self.file_prefix = file_prefix
        self.flush_interval = flush_interval_seconds
        self.calendar = calendar
        self.portfolio = Portfolio()
        self.issues = IssueCollector()
        self.ctx = EngineContext(kernel=self)
        self.ctx.now_ns = self.start_ns
        self.log_sink = LogSink(max_lines=log_max_lines, clock=lambda: self.ctx.now)
        self.ctx.log = strategy_logger(self.log_sink, core.log_level)
        self.client_order_prefix = client_order_prefix
        if broker_factory is None:
            self.broker: EngineBroker = SimulatedBroker(
                core=core, portfolio=self.portfolio, client_order_prefix=client_order_prefix, end_ns=self.end_ns, listener=self
            )
        else:
            self.broker = broker_factory(self)
        self.instruments: dict[tuple[str, AssetType], Instrument] = {}
        self.instruments_by_symbol: dict[str, list[Instrument]] = {}
        self.subscriptions: list[Subscription] = []
        self.strategy = None
        self.phase = "start"  # "start" (on_start: may subscribe) | "run" | "stop"
        self.updates: deque[OrderUpdateEvent] = deque()
        self.wants_updates = True
        self.handler_calls = 0
        self.timers: list[tuple[int, int, str, int]] = []  # (fire ns, generation, name, every ns or 0)
        self.timer_generation: dict[str, int] = {}
        self.timer_sequence = 0
        self.next_timer_ns = NEVER
        self.watchdog = None
        # Equity: the full curve as packed columns (8 bytes a value; a list would take ~5x that).
        # Each batch carries the points from `equity_flushed` on.
        self.equity_times = array("q")  # ns
        self.equity_values = array("d")
        self.equity_cash = array("d")
        self.equity_flushed = 0
        self.exposed_ns = 0
        self.last_invested_ns = -1
        # A backtest's points are worked out in bulk at each batch (runs.engine.equity.ReplayEquity)
        # instead of being recorded per bar; Paper and Live record them per bar (record_equity).
        self.bulk_equity = None
        self.bars_processed = 0
        self.batches = 0
        self.collects_garbage = False  # set while automatic gc is off (see backtest._collect_garbage_per_batch)
        now = wallclock.monotonic()
        self.last_flush = self.last_check = now
        self.last_stop_poll = float("-inf")  # the first check polls: a kill requested before the start stops at once

    # -- handlers ---------------------------------------------------------------------------
    def require_subscriptions(self) -> None:
        """After on_start: a run with nothing subscribed has no data to run on and ends here."""
        if not self.subscriptions:
            self.issues.report(
                diagnostics.DATA_MISSING_FATAL,
                key="no-subscription",
                message="on_start subscribed to nothing, so there is no data to run on: return [Subscribe(symbol, asset_type, frequency)] from on_start",
            )
            raise RunEnded("no subscriptions")

    def start_strategy(self, strategy_class, config: dict) -> None:
        # Strategies that do not handle order updates are not sent any: no event objects, no calls.
        self.wants_updates = getattr(strategy_class, "on_order_update", None) is not StrategyBase.on_order_update
        was_armed = self._arm()
        try:
            self.strategy = strategy_class(self.ctx, config)
        except (Exception, SystemExit, HandlerTimeout) as exc:
            self.handler_failed(exc, "__init__")
        finally:
            self._restore(was_armed)
        self.dispatch("on_start", self.start)
        self.phase = "run"

    def stop_strategy(self, now_ns: int) -> None:
        self.phase = "stop"
        self.broker.accepting = False
        self.ctx.now_ns = now_ns
        self.dispatch("on_stop", from_ns(now_ns))

    def dispatch(self, name: str, argument) -> None:
        """Call one handler with the watchdog armed, apply its actions, deliver the updates."""
        was_armed = self._arm()
        try:
            self.call(name, argument)
            self.drain_updates()
        finally:
            self._restore(was_armed)

    def call(self, name: str, argument) -> None:
        self.handler_calls += 1
        try:
            actions = getattr(self.strategy, name)(argument)
        except (Exception, SystemExit, HandlerTimeout) as exc:
            self.handler_failed(exc, name)
        if actions:
            self.apply(actions, name)

    def drain_updates(self) -> None:
        delivered = 0
        updates = self.updates
        while updates:
            delivered += 1
            if delivered > MAX_UPDATES_PER_EVENT:
                self.handler_failed(
                    RuntimeError(
                        f"more than {MAX_UPDATES_PER_EVENT:,} order updates at one moment: on_order_update keeps "
                        "placing or cancelling orders in answer to its own updates; break the loop"
                    ),
                    "on_order_update",
                )
            self.call("on_order_update", updates.popleft())

    def handler_failed(self, exc: BaseException, handler: str):
        """Record why a handler failed and end the run. KeyboardInterrupt passes through."""
        if not isinstance(exc, Exception | SystemExit | HandlerTimeout):
            raise exc
        trimmed = strategy_traceback(exc, self.file_prefix)
        when = f"at {self.ctx.now:%Y-%m-%d %H:%M:%S} UTC (simulated)"
        if isinstance(exc, HandlerTimeout):
            where = f" in {trimmed.location}" if trimmed.location else ""
            self.issues.report(
                diagnostics.HANDLER_TIMEOUT,
                key=handler,
                message=(
                    f"{handler} ran longer than {self.core.handler_timeout_seconds:g} s (core.handler_timeout_seconds) "
                    f"and was interrupted{where}: make the handler faster, or raise the limit"
                ),
                detail=f"{when}\n{trimmed.detail}",
            )
            raise RunEnded(f"{handler} timed out") from None
        self.issues.report(
            diagnostics.STRATEGY_EXCEPTION,
            key=f"{type(exc).__name__}:{trimmed.location}",
            message=trimmed.message if trimmed.location else f"{trimmed.message} in {handler}",
            detail=f"{when}\n{trimmed.detail}",
        )
        raise RunEnded(trimmed.message) from None

    def _arm(self) -> bool:
        """Arm the watchdog (strategy code is about to run); returns whether it already was."""
        if self.watchdog is None:
            return False
        was_armed = self.watchdog.armed
        if not was_armed:
            self.watchdog.arm()
        return was_armed

    def _disarm(self) -> None:
        if self.watchdog is not None:
            self.watchdog.disarm()

    def _restore(self, was_armed: bool) -> None:
        if not was_armed:
            self._disarm()

    def progress_marker(self):
        return (self.ctx.now_ns, self.handler_calls)

    # -- actions ----------------------------------------------------------------------------
    def apply(self, actions, handler: str) -> None:
        if isinstance(actions, ACTION_TYPES):
            self._invalid(handler, type(actions).__name__, InvalidAction(
                "", "not-a-list", f"{handler} returned a single {type(actions).__name__}: return a list, e.g. [{type(actions).__name__}(...)]"
            ))
            return
        if not isinstance(actions, list | tuple):
            self._invalid(handler, "result", InvalidAction(
                "", f"returned-{type(actions).__name__}",
                f"{handler} returned a {type(actions).__name__}: return a list of actions (or None for nothing)",
            ))
            return
        for action in actions:
            applier = self._appliers.get(type(action))
            try:
                if applier is None:
                    raise InvalidAction(
                        "", f"unknown-{type(action).__name__}",
                        f"{handler} returned a {type(action).__name__}, which is not an action: use Subscribe, PlaceOrder, "
                        "CancelOrder, CancelAllOrders, ScheduleTimer or DepositCash",
                    )
                applier(self, action)
            except InvalidAction as problem:
                self._invalid(handler, type(action).__name__, problem)

    def _invalid(self, handler: str, action_name: str, problem: InvalidAction) -> None:
        self.issues.report(
            diagnostics.INVALID_ACTION,
            key=f"{action_name}.{problem.field}.{problem.rule}",
            message=f"{action_name}{'.' + problem.field if problem.field else ''}: {problem.message}",
            detail=f"returned by {handler} at {self.ctx.now:%Y-%m-%d %H:%M:%S} UTC (simulated); the action was ignored",
        )

    def _subscribe(self, action: Subscribe) -> None:
        if self.phase != "start":
            raise InvalidAction("", "outside-on-start", "subscriptions are made in on_start only: return Subscribe(...) from on_start")
        symbol = _symbol(action.symbol)
        asset_type = _choice(AssetType, action.asset_type, "asset_type")
        frequency = _choice(BarFrequency, action.frequency, "frequency")
        instrument = self.instruments.get((symbol, asset_type))
        if instrument is None:
            security = self.market_data.security(symbol, asset_type)
            if security is None:
                raise InvalidAction("symbol", "unknown-symbol", f"unknown symbol {symbol} ({asset_type}): check the symbol and its asset type")
            instrument = Instrument(security)
            try:
                instrument.sessions = sessions_between(calendar_for(asset_type, self.calendar), self.start, self.end)
            except ValueError as exc:
                raise InvalidAction("symbol", "calendar", str(exc)) from None
            self.instruments[instrument.key] = instrument
            self.instruments_by_symbol.setdefault(symbol, []).append(instrument)
        if any(s.instrument is instrument and s.frequency is frequency for s in self.subscriptions):
            return
        self.subscriptions.append(Subscription(len(self.subscriptions), instrument, frequency))

    def _place_order(self, action: PlaceOrder) -> None:
        symbol = _symbol(action.symbol)
        intent = _choice(Intent, action.intent, "intent")
        order_type = _choice(OrderType, action.order_type, "order_type")
        time_in_force = _choice(TimeInForce, action.time_in_force, "time_in_force")
        asset_type = _choice(AssetType, action.asset_type, "asset_type") if action.asset_type is not None else None
        quantity = notional = None
        if intent is not CLOSE:
            if (action.quantity is None) == (action.notional is None):
                raise InvalidAction(
                    "quantity", "quantity-xor-notional",
                    "give exactly one of quantity and notional, e.g. PlaceOrder(symbol, Intent.BUY, quantity=10)",
                )
            if action.quantity is not None:
                quantity = money(_number(action.quantity, "quantity"))
            else:
                notional = money(_number(action.notional, "notional"))
        limit_price = _price(action.limit_price, "limit_price")
        stop_price = _price(action.stop_price, "stop_price")
        needs_limit = order_type is LIMIT or order_type is STOP_LIMIT
        needs_stop = order_type is STOP or order_type is STOP_LIMIT
        if needs_limit and limit_price is None:
            raise InvalidAction("limit_price", "missing", f"a {order_type.name} order needs limit_price=...")
        if not needs_limit and limit_price is not None:
            raise InvalidAction(
                "limit_price", "not-applicable",
                f"limit_price does not apply to a {order_type.name} order: remove it or use order_type=OrderType.LIMIT",
            )
        if needs_stop and stop_price is None:
            raise InvalidAction("stop_price", "missing", f"a {order_type.name} order needs stop_price=...")
        if not needs_stop and stop_price is not None:
            raise InvalidAction(
                "stop_price", "not-applicable",
                f"stop_price does not apply to a {order_type.name} order: remove it or use order_type=OrderType.STOP",
            )
        tag = action.tag
        if tag is not None and (not isinstance(tag, str) or len(tag) > MAX_TAG_LENGTH):
            raise InvalidAction("tag", "invalid", f"tag must be text of at most {MAX_TAG_LENGTH} characters")
        instrument = self._instrument(symbol, asset_type)
        self.broker.place(
            instrument,
            symbol,
            instrument.asset_type if instrument is not None else (asset_type or AssetType.EQUITY),
            intent,
            quantity,
            notional,
            order_type,
            limit_price,
            stop_price,
            time_in_force,
            tag,
            self.ctx.now_ns,
            self.ctx.now,
        )

    def _instrument(self, symbol: str, asset_type: AssetType | None) -> Instrument | None:
        if asset_type is not None:
            return self.instruments.get((symbol, asset_type))
        matches = self.instruments_by_symbol.get(symbol, ())
        if len(matches) > 1:
            raise InvalidAction(
                "asset_type", "ambiguous", f"{symbol} is subscribed as both equity and future: pass asset_type=AssetType.EQUITY or FUTURE"
            )
        return matches[0] if matches else None

    def _cancel_order(self, action: CancelOrder) -> None:
        order_id = action.order_id
        if isinstance(order_id, bool) or not isinstance(order_id, int):
            raise InvalidAction("order_id", "type", "order_id must be the integer id from an order update or ctx.open_orders()")
        if not 1 <= order_id <= self.broker.last_order_id:
            raise InvalidAction("order_id", "unknown", f"there is no order {order_id}: take ids from order updates or ctx.open_orders()")
        order = self.broker.open_orders.get(order_id)
        if order is not None:  # an order that already finished (filled in the meantime) needs nothing
            self.broker.cancel(order, now=self.ctx.now, reason="cancelled by the strategy")

    def _cancel_all(self, action: CancelAllOrders) -> None:
        symbol = _symbol(action.symbol) if action.symbol is not None else None
        for order in list(self.broker.open_orders.values()):
            if symbol is None or order.symbol == symbol:
                self.broker.cancel(order, now=self.ctx.now, reason="cancelled by the strategy")

    def _schedule_timer(self, action: ScheduleTimer) -> None:
        name = action.name
        if not isinstance(name, str) or not name.strip():
            raise InvalidAction("name", "invalid", "name must be non-empty text, e.g. ScheduleTimer('rebalance', every=timedelta(hours=1))")
        if (action.every is None) == (action.at is None):
            raise InvalidAction("every", "every-xor-at", "give exactly one of every=timedelta(...) and at=datetime(...)")
        now_ns = self.ctx.now_ns
        if action.every is not None:
            if not isinstance(action.every, timedelta) or action.every <= timedelta(0):
                raise InvalidAction("every", "invalid", "every must be a positive timedelta, e.g. timedelta(minutes=30)")
            every_ns = action.every // timedelta(microseconds=1) * 1000
            fire_ns = now_ns + every_ns
        else:
            if not isinstance(action.at, datetime) or action.at.tzinfo is None:
                raise InvalidAction("at", "invalid", "at must be a time-zone aware datetime, e.g. datetime(2020, 1, 2, 15, tzinfo=UTC)")
            fire_ns, every_ns = to_ns(action.at), 0
            if fire_ns < now_ns:
                raise InvalidAction("at", "past", f"at {action.at.isoformat()} is before now ({self.ctx.now.isoformat()}): schedule a later time")
        self.timer_sequence += 1
        self.timer_generation[name] = self.timer_sequence  # a timer of the same name is replaced
        heapq.heappush(self.timers, (fire_ns, self.timer_sequence, name, every_ns))
        self.next_timer_ns = self.timers[0][0]

    def _deposit(self, action: DepositCash) -> None:
        amount = money(_number(action.amount, "amount"))
        if amount <= 0:
            raise InvalidAction("amount", "not-positive", f"amount is {plain(amount)}: deposit a positive amount")
        self.portfolio.deposit(amount, time=self.ctx.now, description="DepositCash by the strategy")

    _appliers = {
        Subscribe: _subscribe,
        PlaceOrder: _place_order,
        CancelOrder: _cancel_order,
        CancelAllOrders: _cancel_all,
        ScheduleTimer: _schedule_timer,
        DepositCash: _deposit,
    }

    # -- broker events ----------------------------------------------------------------------
    def order_changed(self, order: Order, time: datetime, last_quantity, last_price) -> None:
        if not self.wants_updates:
            return
        self.updates.append(
            OrderUpdateEvent(
                order.order_id,
                order.tag,
                order.symbol,
                order.state,
                order.filled_quantity,
                order.average_fill_price,
                last_quantity,
                last_price,
                order.reason or None,
                time,
            )
        )

    def order_rejected(self, order: Order, category: str) -> None:
        kind: IssueKind = diagnostics.RISK_LIMIT if category == RISK_LIMIT else diagnostics.ORDER_REJECTED
        self.issues.report(
            kind,
            key=category,
            message=_REJECTION_MESSAGES[category],
            detail=f"latest: order {order.order_id} ({order.intent.name} {order.symbol}) at {order.updated_at:%Y-%m-%d %H:%M:%S} UTC: {order.reason}",
        )

    # -- time -------------------------------------------------------------------------------
    def advance(self, until_ns: int) -> None:
        """Run everything due strictly before `until_ns`, in time order: DAY order expiries
        (at their session close) and timers."""
        broker = self.broker
        while True:
            expiry, timer = broker.next_expiry_ns, self.next_timer_ns
            if expiry < until_ns and expiry <= timer:
                self.ctx.now_ns = expiry
                broker.expire_due(expiry, inclusive=True)
                self.dispatch_updates()
            elif timer < until_ns:
                self.fire_timers(timer, inclusive=True)
            else:
                return

    def fire_timers(self, until_ns: int, *, inclusive: bool) -> None:
        timers = self.timers
        while timers:
            fire_ns, generation, name, every_ns = timers[0]
            if self.timer_generation.get(name) != generation:
                heapq.heappop(timers)  # replaced by a newer timer of the same name
                continue
            if fire_ns > until_ns or (fire_ns == until_ns and not inclusive):
                break
            heapq.heappop(timers)
            if every_ns:
                heapq.heappush(timers, (fire_ns + every_ns, generation, name, every_ns))
            else:
                del self.timer_generation[name]
            self.ctx.now_ns = fire_ns
            self.dispatch("on_timer", TimerEvent(name=name, time=from_ns(fire_ns)))
        self.next_timer_ns = timers[0][0] if timers else NEVER

    def dispatch_updates(self) -> None:
        if self.updates:
            was_armed = self._arm()
            try:
                self.drain_updates()
            finally:
                self._restore(was_armed)

    def fill_bar(
        self, instrument: Instrument, trading_from_ns: int, close_ns: int, open_: float, high: float, low: float, volume: float,
    ) -> None:
        """Evaluate the instrument's working orders on a bar whose trading starts at
        `trading_from_ns` (its stored time, or its session's open for a daily bar stored before
        the session opens) and which closes at `close_ns`."""
        self.broker.evaluate(instrument, trading_from_ns, close_ns, open_, high, low, volume)
        if self.broker.next_expiry_ns <= close_ns:
            self.broker.expire_instrument(instrument, close_ns)
        if self.updates:
            self.drain_updates()

    def run_out(self) -> None:
        """After the last bar: the clock runs on to `end` (timers before it fire; DAY orders of
        sessions closed by then expire)."""
        self.advance(self.end_ns)
        if self.broker.next_expiry_ns <= self.end_ns:
            self.ctx.now_ns = self.end_ns
            self.broker.expire_due(self.end_ns, inclusive=True)
            self.dispatch_updates()
        self.ctx.now_ns = self.end_ns

    def close_remaining_orders(self, reason: str) -> None:
        """No order outlives its run: the ones still working are cancelled (recorded, not
        delivered to the strategy, whose last handler has run)."""
        for order in list(self.broker.open_orders.values()):
            self.broker.cancel(order, now=self.ctx.now, reason=reason, notify=False)

    # -- equity and batches -----------------------------------------------------------------
    def record_equity(self, time_ns: int) -> None:
        """An equity point at `time_ns`, valued now (Paper and Live per bar; a backtest's start)."""
        portfolio = self.portfolio
        if portfolio.open_positions:
            units = portfolio.value_units()
            value_float = units / 100_000_000 if units is not None else float(portfolio.value())
            # Time with a position: the intervals between two points that both had one.
            times = self.equity_times
            if times and times[-1] == self.last_invested_ns:
                self.exposed_ns += time_ns - self.last_invested_ns
            self.last_invested_ns = time_ns
        else:
            value_float = portfolio.cash_float
        self.equity_times.append(time_ns)
        self.equity_values.append(value_float)
        self.equity_cash.append(portfolio.cash_float)

    def settle_equity(self) -> None:
        """Bring the curve up to `bars_processed`: the bulk points of a backtest."""
        if self.bulk_equity is not None:
            self.append_equity(*self.bulk_equity.points(self.bars_processed))

    def append_equity(self, times: np.ndarray, values: np.ndarray, cash: np.ndarray, invested: np.ndarray) -> None:
        """Points made in bulk, with record_equity's exposure bookkeeping: the time with a
        position is the sum of the intervals between two points that both had one."""
        if not len(times):
            return
        previous = self.equity_times
        if previous and previous[-1] == self.last_invested_ns and invested[0]:
            self.exposed_ns += int(times[0]) - self.last_invested_ns
        both = invested[1:] & invested[:-1]
        self.exposed_ns += int((times[1:][both] - times[:-1][both]).sum())
        held = np.flatnonzero(invested)
        if len(held):
            self.last_invested_ns = int(times[held[-1]])
        self.equity_times.frombytes(np.ascontiguousarray(times, dtype=np.int64).tobytes())
        self.equity_values.frombytes(np.ascontiguousarray(values, dtype=np.float64).tobytes())
        self.equity_cash.frombytes(np.ascontiguousarray(cash, dtype=np.float64).tobytes())

    def wall_check(self, bars_done: int, bars_since_check: int) -> int:
        """About every TARGET_CHECK_SECONDS of wall time: flush, poll for a kill. Returns how
        many bars to process before the next check."""
        self.bars_processed = bars_done
        now = wallclock.monotonic()
        elapsed = now - self.last_check
        self.last_check = now
        self.note_slow_handler()
        if now - self.last_stop_poll >= STOP_POLL_SECONDS:
            self.last_stop_poll = now
            if self._stop_requested():
                raise StopRequested
        if now - self.last_flush >= self.flush_interval:
            self.flush()
        # At most double: bars that suddenly get slower must not push the next check far away.
        ceiling = min(4096, 2 * max(1, bars_since_check))
        if elapsed <= 0:
            return ceiling
        return max(1, min(ceiling, int(bars_since_check * TARGET_CHECK_SECONDS / elapsed)))

    def note_slow_handler(self) -> None:
        """Outside the main thread the watchdog cannot interrupt a slow handler; it only flags
        it, and the issue is recorded here."""
        if self.watchdog is not None and self.watchdog.fired and not self.watchdog.interrupts:
            self.watchdog.fired = False
            self.issues.report(
                diagnostics.HANDLER_TIMEOUT,
                key="thread",
                message=(
                    f"a handler ran longer than {self.core.handler_timeout_seconds:g} s (core.handler_timeout_seconds); "
                    "outside the worker's main thread it could not be interrupted: make the handler faster"
                ),
                detail=f"noticed at {self.ctx.now:%Y-%m-%d %H:%M:%S} UTC (simulated)",
            )

    def _stop_requested(self) -> bool:
        was_armed = self.watchdog is not None and self.watchdog.armed
        self._disarm()
        try:
            return bool(self.should_stop())
        finally:
            if was_armed:
                self._arm()

    def progress(self) -> int:
        span = self.end_ns - self.start_ns
        return max(0, min(100, int((self.ctx.now_ns - self.start_ns) * 100 // span)))

    def _unflushed_equity(self) -> EquityPoints:
        self.settle_equity()
        first, self.equity_flushed = self.equity_flushed, len(self.equity_times)
        # Slicing an array copies it, so the arrays stay growable (a numpy view would pin them).
        return EquityPoints(
            np.frombuffer(self.equity_times[first:], dtype=np.int64),
            np.frombuffer(self.equity_values[first:], dtype=np.float64),
            np.frombuffer(self.equity_cash[first:], dtype=np.float64),
        )

    def flush(self, *, final: bool = False, progress: int | None = None) -> None:
        broker, portfolio = self.broker, self.portfolio
        now = self.ctx.now
        positions = dict(portfolio.touched)
        for position in portfolio.open_positions:
            positions[position.instrument.key] = position
        batch = RecordBatch(
            orders=[order.record() for order in broker.changed.values()],
            fills=broker.new_fills,
            positions=[portfolio.record(position, now) for position in positions.values()],
            ledger=portfolio.new_entries,
            equity=self._unflushed_equity(),
            logs=self.log_sink.drain(),
            issues=self.issues.drain(),
            progress=self.progress() if progress is None else progress,
            bars_processed=self.bars_processed,
            cash=portfolio.cash,
            portfolio_value=portfolio.value(),
            final=final,
        )
        broker.changed = {}
        broker.new_fills = []
        portfolio.touched = {}
        portfolio.new_entries = []
        was_armed = self.watchdog is not None and self.watchdog.armed
        self._disarm()
        try:
            self.recorder.record(batch)
        finally:
            if was_armed:
                self._arm()
        del batch  # before collecting: its records need not be walked
        self.batches += 1
        if self.collects_garbage:
            if self.batches % FULL_COLLECTION_EVERY == 0:
                gc.collect()
            elif gc.get_count()[0] > YOUNG_OBJECTS_BEFORE_COLLECTING:
                gc.collect(1)
        self.last_flush = wallclock.monotonic()


_REJECTION_MESSAGES = {
    "insufficient buying power": (
        "Orders were rejected for insufficient buying power: the fill would take gross exposure above "
        "core.max_leverage × portfolio value. Size orders from ctx.cash or ctx.portfolio_value, or raise core.max_leverage."
    ),
    "short not allowed": (
        "Orders were rejected because they would open a short position and core.allow_short is off: "
        "exit with SELL_TO_CLOSE or CLOSE, or enable core.allow_short."
    ),
    "quantity not positive": (
        "Orders were rejected because their quantity (or notional) was not positive, or a notional order could "
        "not buy a single unit: send a positive size large enough for one share or contract."
    ),
    "fractional quantity not allowed": (
        "Orders were rejected for a fractional quantity of a security that trades in whole units: round the quantity."
    ),
    "unknown symbol": (
        "Orders were rejected for a symbol the strategy did not subscribe to: subscribe to it in on_start, or fix the symbol."
    ),
    "risk limit": (
        "Orders were rejected by a risk limit (core.max_order_value or core.max_position_value): trade smaller or raise the limit."
    ),
    "market closed": (
        "Orders were rejected because no trading session was left to work them in (the backtest ends first, or the run "
        "was stopping): place orders earlier."
    ),
}


def _symbol(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidAction("symbol", "invalid", "symbol must be non-empty text, e.g. \"MSFT\"")
    return value.strip().upper()


def _choice(enum, value, field: str):
    if value.__class__ is enum:
        return value
    try:
        return enum(value)
    except ValueError:
        names = ", ".join(f"{enum.__name__}.{member.name}" for member in enum)
        raise InvalidAction(field, "invalid", f"{value!r} is not one of {names}") from None


def _number(value, field: str) -> Decimal:
    try:
        return to_decimal(value)
    except ValueError as exc:
        raise InvalidAction(field, "not-a-number", f"{exc}: pass an int, float or Decimal") from None


def _price(value, field: str) -> Decimal | None:
    if value is None:
        return None
    price = money(_number(value, field))
    if price <= 0:
        raise InvalidAction(field, "not-positive", f"{field} is {plain(price)}: prices must be greater than 0")
    return price
