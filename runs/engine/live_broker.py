"""The Live broker: the engine's broker surface over a real broker account (Alpaca).

What makes it safe to run unattended:
- Orders are safe to retry. Each order gets a deterministic client_order_id (`{prefix}-{order id}`,
  prefix from the run id), and the runner stores the order row (`store_order`) BEFORE it is
  sent. A timeout or a dropped answer leaves the order `unknown` (kept PENDING with an
  "unknown" reason) until the broker is asked about that client_order_id: never a blind resubmit,
  so exactly one broker order results.
- Executions are applied once: the trade-updates stream's `execution_id` is the fill's key
  (unique per run in the database too), and ids already booked are skipped.
- The kill wins: `send_guard` (from the runner) is entered around every send; it says no once
  the kill is recorded, and while an order is being sent the kill waits for it, so no order
  reaches the broker after the kill is recorded. On stop, the run's working orders are
  cancelled at the broker; positions are never closed, and an issue lists those left open.
- Positions and cash are reconciled with the broker at the start and every
  `reconcile_seconds`: a difference raises a `broker_drift` issue; one still there at the next
  check and worth more than the tolerance (DRIFT_TOLERANCE_FRACTION of the portfolio value,
  at least DRIFT_TOLERANCE_MINIMUM) halts the run: no further orders.

The run's cash starts as the account's cash (the runner sets core.starting_cash from it); positions
the account held before the run (`baseline`) are the account's, not the run's, and are left out
of the comparison.
"""

from __future__ import annotations

import contextlib
import queue
import time as wallclock
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from runs.adapters.alpaca import (
    STREAM_RECONNECTED,
    AlpacaAccount,
    AlpacaAuthError,
    AlpacaError,
    AlpacaOrder,
    AlpacaOutcomeUnknown,
    AlpacaPosition,
    AlpacaRejected,
    AlpacaUnavailable,
    TradeUpdate,
)
from runs.engine.broker import NEVER, Order
from runs.engine.core_settings import CoreSettings
from runs.engine.decimals import ZERO, money, plain
from runs.engine.diagnostics import IssueCollector, IssueKind
from runs.engine.feed import Instrument
from runs.engine.ledger import Portfolio
from runs.engine.records import FillRecord, OrderRecord
from runs.engine.sessions import calendar_for, sessions_between
from strategies.sdk.enums import AssetType, Intent, OrderState, OrderType, TimeInForce

# A drift worth more than this share of the portfolio value (or this amount, if larger),
# seen at two consecutive reconciliations, halts the run.
DRIFT_TOLERANCE_FRACTION = Decimal("0.01")
DRIFT_TOLERANCE_MINIMUM = Decimal("1.00")
# Cash differences below this are rounding (Alpaca reports cents) and not drift.
CASH_EPSILON = Decimal("0.01")
RECONCILE_SECONDS = 30.0
# An order whose answer was lost is looked up this often; if the broker still does not know
# it after UNKNOWN_GIVE_UP_SECONDS it was never received, and is marked rejected.
UNKNOWN_LOOKUP_SECONDS = 1.0
UNKNOWN_GIVE_UP_SECONDS = 30.0
CANCEL_WAIT_SECONDS = 10.0

BROKER_UNAVAILABLE = IssueKind("broker_unavailable", "broker", "system", "error")
BROKER_REJECTED = IssueKind("order_rejected", "broker", "user", "warning")
BROKER_AUTH = IssueKind("broker_unavailable", "broker", "user", "error")
ORDER_UNKNOWN = IssueKind("order_unknown", "broker", "system", "warning")
BROKER_DRIFT = IssueKind("broker_drift", "broker", "system", "warning")
BROKER_DRIFT_HALT = IssueKind("broker_drift", "broker", "system", "error")
OUTSIDE_TRADE = IssueKind("outside_trade", "broker", "user", "warning")
POSITIONS_LEFT_OPEN = IssueKind("positions_left_open", "broker", "user", "warning")

UNKNOWN_REASON = "unknown: the broker's answer was lost; looking the order up by client_order_id"
_SIDES = {Intent.BUY: "buy", Intent.SELL: "sell", Intent.BUY_TO_CLOSE: "buy", Intent.SELL_TO_CLOSE: "sell"}
_ALPACA_TYPES = {OrderType.MARKET: "market", OrderType.LIMIT: "limit", OrderType.STOP: "stop", OrderType.STOP_LIMIT: "stop_limit"}
_FINAL_EVENTS = {
    "canceled": OrderState.CANCELLED,
    "expired": OrderState.EXPIRED,
    "done_for_day": OrderState.EXPIRED,
    "rejected": OrderState.REJECTED,
    "replaced": OrderState.CANCELLED,
    "stopped": OrderState.CANCELLED,
    "suspended": OrderState.CANCELLED,
}
_OPEN_STATES = (OrderState.PENDING, OrderState.WORKING, OrderState.PARTIALLY_FILLED)


class BrokerGateway(Protocol):
    """The broker calls the Live broker makes (runs.adapters.alpaca.AlpacaTradingClient)."""

    def account(self) -> AlpacaAccount: ...

    def positions(self) -> list[AlpacaPosition]: ...

    def submit_order(self, *, client_order_id: str, symbol: str, side: str, type: str, time_in_force: str,
                     qty: Decimal | None = None, notional: Decimal | None = None,
                     limit_price: Decimal | None = None, stop_price: Decimal | None = None) -> AlpacaOrder: ...

    def order_by_client_order_id(self, client_order_id: str) -> AlpacaOrder | None: ...

    def cancel_order(self, order_id: str) -> None: ...


class LiveOrder(Order):
    __slots__ = ("broker_order_id", "unknown_since", "last_lookup", "cancel_sent")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.broker_order_id = ""
        self.unknown_since: float | None = None
        self.last_lookup = 0.0
        self.cancel_sent = False

    def record(self) -> OrderRecord:
        record = super().record()
        record.broker_order_id = self.broker_order_id
        return record


@dataclass
class Reconciliation:
    """What the broker reported at one reconciliation, and the differences found."""

    taken_at: datetime
    account: AlpacaAccount
    positions: list[AlpacaPosition]
    position_drift: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)  # symbol -> (run, broker less baseline)
    cash_drift: Decimal = ZERO
    drift_value: Decimal = ZERO


@contextlib.contextmanager
def _always_send():
    yield True


class LiveBroker:
    def __init__(
        self,
        *,
        core: CoreSettings,
        portfolio: Portfolio,
        client_order_prefix: str,
        end_ns: int = NEVER,
        listener,
        gateway: BrokerGateway,
        updates: queue.Queue,
        issues: IssueCollector,
        store_order: Callable[[OrderRecord], None] = lambda record: None,
        send_guard: Callable[[], contextlib.AbstractContextManager[bool]] = _always_send,
        instrument_for: Callable[[str], Instrument | None] = lambda symbol: None,
        on_reconciled: Callable[[Reconciliation], None] = lambda reconciliation: None,
        on_prepare: Callable[[LiveBroker, datetime], None] = lambda broker, now: None,
        baseline: dict[str, Decimal] | None = None,
        reconcile_seconds: float = RECONCILE_SECONDS,
        unknown_give_up_seconds: float = UNKNOWN_GIVE_UP_SECONDS,
    ):
        self.core = core
        self.portfolio = portfolio
        self.prefix = client_order_prefix
        self.end_ns = end_ns
        self.listener = listener
        self.gateway = gateway
        self.updates = updates
        self.issues = issues
        self.store_order = store_order
        self.send_guard = send_guard
        self.instrument_for = instrument_for
        self.on_reconciled = on_reconciled
        self.on_prepare = on_prepare
        self.baseline: dict[str, Decimal] = dict(baseline or {})
        self.reconcile_seconds = reconcile_seconds
        self.unknown_give_up_seconds = unknown_give_up_seconds
        # The engine broker surface (see SimulatedBroker).
        self.open_orders: dict[int, LiveOrder] = {}
        self.changed: dict[int, LiveOrder] = {}
        self.fills: list[FillRecord] = []
        self.new_fills: list[FillRecord] = []
        self.last_order_id = 0
        self.next_expiry_ns = NEVER  # the broker expires DAY orders and tells us
        self.accepting = True
        # Live state.
        self.orders_by_client: dict[str, LiveOrder] = {}
        self.execution_ids: set[str] = set()
        self.killed = False
        self.halted = ""  # why the run was halted; no order is sent once set
        self.sent = 0
        self.last_reconcile = float("-inf")
        self.drift_seen_before = False
        self.last_reconciliation: Reconciliation | None = None

    @contextlib.contextmanager
    def _unwatched(self):
        """Network calls are not strategy time: the handler watchdog (the listener's, when it
        has one) is paused, so a slow broker never interrupts a send halfway."""
        watchdog = getattr(self.listener, "watchdog", None)
        armed = watchdog is not None and watchdog.armed
        if armed:
            watchdog.disarm()
        try:
            yield
        finally:
            if armed:
                watchdog.arm()

    # -- starting and resuming ---------------------------------------------------------------
    def prepare(self, now: datetime) -> None:
        """Before the strategy starts (run_realtime calls it): the runner's preparation (a
        resumed run's books and open orders), then a reconciliation with the account. No order
        can be sent before this returns."""
        self.on_prepare(self, now)
        self.reconcile(now)

    def resume(self, *, orders: list[LiveOrder], execution_ids: set[str], last_order_id: int) -> None:
        """A restarted run: the orders and executions it already stored. Call before anything
        else, then `catch_up` to learn from the broker what happened while nobody listened."""
        self.last_order_id = max(self.last_order_id, last_order_id)
        self.execution_ids |= execution_ids
        for order in orders:
            self.orders_by_client[order.client_order_id] = order
            if order.state in _OPEN_STATES:
                self.open_orders[order.order_id] = order
                if not order.broker_order_id:
                    order.unknown_since = wallclock.monotonic()

    def catch_up(self, now: datetime) -> None:
        """Ask the broker about every order still open here (by client_order_id) and book what
        was filled meanwhile: the part not yet booked, once (a deterministic execution id)."""
        self.drain(now)
        for order in list(self.open_orders.values()):
            try:
                remote = self.gateway.order_by_client_order_id(order.client_order_id)
            except AlpacaError as exc:
                self._broker_problem(exc, f"looking up order {order.order_id}")
                raise
            if remote is None:
                if order.unknown_since is None:
                    order.unknown_since = wallclock.monotonic()
                continue
            self._adopt(order, remote, now, notify=False)

    def _adopt(self, order: LiveOrder, remote: AlpacaOrder, now: datetime, *, notify: bool) -> None:
        """Make the order match what the broker says about it (after a lookup)."""
        order.broker_order_id = remote.id
        order.unknown_since = None
        if order.reason == UNKNOWN_REASON:
            order.reason = ""
        missing = remote.filled_qty - order.filled_quantity
        if missing > 0 and remote.filled_avg_price is not None:
            # Executions this run did not see: book them as one, priced so the order's average
            # matches the broker's.
            cost = remote.filled_avg_price * remote.filled_qty - order.filled_cost
            price = money(cost / missing)
            self._book_fill(order, f"{order.client_order_id}-catch-up-{plain(remote.filled_qty)}", missing, price,
                            remote.side, remote.updated_at or now, notify=notify)
        state = _state_of(remote)
        if state in (OrderState.CANCELLED, OrderState.EXPIRED, OrderState.REJECTED):
            self._finish(order, state, f"{remote.status} at the broker", remote.updated_at or now, notify=notify)
        elif state is OrderState.FILLED and order.state is not OrderState.FILLED:
            self._finish(order, OrderState.FILLED, "", remote.updated_at or now, notify=notify)
        elif order.state is OrderState.PENDING:
            order.state = OrderState.WORKING
            self._changed(order, now, notify=notify)
        else:
            self.changed[order.order_id] = order

    # -- placing and cancelling -------------------------------------------------------------
    def place(self, instrument, symbol, asset_type, intent, quantity, notional, order_type, limit_price, stop_price,
              time_in_force, tag, now_ns, now) -> Order:
        self.last_order_id += 1
        order_id = self.last_order_id
        closing = intent is Intent.CLOSE
        order = LiveOrder(
            order_id, f"{self.prefix}-{order_id}", instrument, symbol, asset_type, intent, order_type, time_in_force,
            None if closing else quantity, None if closing else notional, limit_price, stop_price, tag, _SIDES.get(intent, ""), now,
        )
        self.orders_by_client[order.client_order_id] = order
        self.changed[order_id] = order
        problem = self._placement_problem(order, instrument)
        if problem is not None:
            self._refuse(order, problem, now)
            return order
        side, qty = self._side_and_quantity(order, instrument)
        if qty is not None and qty <= 0:
            self._finish(order, OrderState.CANCELLED, "nothing to close: the position is flat", now)
            return order
        order.side = side
        if intent in (Intent.CLOSE, Intent.SELL_TO_CLOSE, Intent.BUY_TO_CLOSE):
            order.quantity = qty
        with self._unwatched():
            return self._send(order, side, qty, now)

    def _send(self, order: LiveOrder, side: str, qty: Decimal | None, now: datetime) -> LiveOrder:
        order_id, symbol, order_type, time_in_force = order.order_id, order.symbol, order.order_type, order.time_in_force
        limit_price, stop_price = order.limit_price, order.stop_price
        # Stored before it is sent: whatever happens next, the client_order_id is on record.
        self.store_order(order.record())
        with self.send_guard() as allowed:
            if not allowed:
                self.killed = True
                self.accepting = False
                self._finish(order, OrderState.CANCELLED, "not sent: the run was killed", now)
                return order
            self.open_orders[order_id] = order
            try:
                self.sent += 1
                remote = self.gateway.submit_order(
                    client_order_id=order.client_order_id, symbol=symbol, side=side, type=_ALPACA_TYPES[order_type],
                    time_in_force=time_in_force.value, qty=qty if order.notional is None else None,
                    notional=order.notional, limit_price=limit_price, stop_price=stop_price,
                )
            except AlpacaOutcomeUnknown as exc:
                order.unknown_since = order.last_lookup = wallclock.monotonic()
                order.reason = UNKNOWN_REASON
                self.issues.report(
                    ORDER_UNKNOWN, key="lost-answer",
                    message=("The broker's answer to an order was lost (timeout or dropped connection); the order is looked up "
                             "by its client_order_id and never sent again."),
                    detail=f"latest: order {order_id} ({order.client_order_id}) at {now:%Y-%m-%d %H:%M:%S} UTC: {exc.message}",
                )
                return order
            except AlpacaRejected as exc:
                self.open_orders.pop(order_id, None)
                self._refuse(order, f"rejected by the broker: {exc.message}", now)
                return order
            except AlpacaError as exc:  # unavailable before anything was sent, or refused credentials
                self.open_orders.pop(order_id, None)
                self._broker_problem(exc, f"placing order {order_id}")
                self._finish(order, OrderState.REJECTED, f"not sent: the broker is unavailable ({exc.message})", now)
                return order
        order.broker_order_id = remote.id
        if order.state is OrderState.PENDING:  # a stream update may have come first
            state = _state_of(remote)
            if state is OrderState.REJECTED:
                self.open_orders.pop(order_id, None)
                self._refuse(order, f"rejected by the broker: {remote.status}", now)
                return order
            order.state = OrderState.WORKING
            self._changed(order, now)
        return order

    def _placement_problem(self, order: LiveOrder, instrument) -> str | None:
        if self.halted:
            return f"not sent: the run is halted ({self.halted})"
        if self.killed or not self.accepting:
            return "not sent: the run is stopping"
        if instrument is None:
            return f"unknown symbol: {order.symbol} ({order.asset_type}) is not subscribed: add Subscribe(\"{order.symbol}\", ...) to on_start"
        if order.asset_type is not AssetType.EQUITY:
            return f"{order.asset_type} orders are not supported by this broker account: Live trades equities"
        amount = order.quantity if order.quantity is not None else order.notional
        if order.intent is not Intent.CLOSE and amount <= 0:
            return f"quantity not positive: {plain(amount)} must be greater than 0"
        if order.notional is not None and (order.order_type is not OrderType.MARKET or order.time_in_force is not TimeInForce.DAY):
            return "notional orders must be MARKET and DAY at this broker: give a quantity instead"
        if order.quantity is not None and order.quantity != order.quantity.to_integral_value() and not instrument.security.fractionable:
            return f"fractional quantity not allowed: {order.symbol} trades in whole units only"
        # The broker fills, so the core risk settings are checked before sending, against the
        # position plus what the run's working orders could still add.
        if order.intent is Intent.SELL and order.quantity is not None and not self.core.allow_short:
            held = instrument.position.quantity if instrument.position is not None else ZERO
            selling = sum((o.quantity - o.filled_quantity for o in self.open_orders.values()
                           if o.symbol == order.symbol and o.side == "sell" and o.quantity is not None), ZERO)
            if held - selling - order.quantity < 0:
                return (f"short not allowed: selling {plain(order.quantity)} {order.symbol} would leave a position of "
                        f"{plain(held - selling - order.quantity)}: use SELL_TO_CLOSE to exit, or set core.allow_short")
        price = Decimal(repr(instrument.last_close)) if instrument.last_close is not None else order.limit_price or order.stop_price
        size = order.notional if order.notional is not None else (order.quantity * price if order.quantity is not None and price else None)
        if self.core.max_order_value is not None and size is not None and size > self.core.max_order_value:
            return (f"risk limit: order value {size:,.2f} is above core.max_order_value {self.core.max_order_value:,.2f}: "
                    "trade smaller or raise the limit")
        return None

    def _side_and_quantity(self, order: LiveOrder, instrument: Instrument) -> tuple[str, Decimal | None]:
        held = instrument.position.quantity if instrument.position is not None else ZERO
        intent = order.intent
        if intent is Intent.CLOSE:
            return ("sell" if held > 0 else "buy"), abs(held)
        if intent is Intent.SELL_TO_CLOSE:
            return "sell", min(order.quantity, max(held, ZERO)) if order.quantity is not None else None
        if intent is Intent.BUY_TO_CLOSE:
            return "buy", min(order.quantity, max(-held, ZERO)) if order.quantity is not None else None
        return _SIDES[intent], order.quantity

    def cancel(self, order: Order, *, now: datetime, reason: str, notify: bool = True) -> None:
        """Ask the broker to cancel; the order ends when the broker confirms (a stream update)."""
        if order.order_id not in self.open_orders or order.cancel_sent:
            return
        if not order.broker_order_id:
            remote = self._lookup(order)
            if remote is None:
                return  # unknown to the broker (still being looked up): nothing to cancel there yet
            self._adopt(order, remote, now, notify=notify)
            if order.order_id not in self.open_orders:
                return
        try:
            with self._unwatched():
                self.gateway.cancel_order(order.broker_order_id)
            order.cancel_sent = True
        except AlpacaError as exc:
            self._broker_problem(exc, f"cancelling order {order.order_id}")

    # The broker works and expires orders itself; bars do not fill anything here.
    def evaluate(self, instrument, bar_open_ns, close_ns, open_, high, low, volume) -> None:
        return None

    def expire_due(self, until_ns: int, *, inclusive: bool) -> None:
        return None

    def expire_instrument(self, instrument, until_ns: int) -> None:
        return None

    # -- what the broker tells us -----------------------------------------------------------
    def drain(self, now: datetime, *, wait: float = 0.0) -> int:
        """Apply every trade update waiting on the stream; returns how many there were."""
        applied = 0
        while True:
            try:
                update = self.updates.get(timeout=wait) if wait > 0 and applied == 0 else self.updates.get_nowait()
            except queue.Empty:
                return applied
            applied += 1
            self.apply_update(update, now)

    def apply_update(self, update: TradeUpdate, now: datetime) -> None:
        if update.event == STREAM_RECONNECTED.event:
            # Updates sent while the stream was down are lost: ask about every open order.
            for order in list(self.open_orders.values()):
                remote = self._lookup(order)
                if remote is not None:
                    self._adopt(order, remote, now, notify=True)
            return
        remote = update.order
        order = self.orders_by_client.get(remote.client_order_id)
        when = update.timestamp or now
        if order is None:
            if update.event in ("fill", "partial_fill"):
                self.issues.report(
                    OUTSIDE_TRADE, key=remote.symbol,
                    message=(f"A trade on the broker account was not made by this run ({remote.side} {plain(update.qty or ZERO)} "
                             f"{remote.symbol}): someone else uses the account. The run's positions no longer match the account's; "
                             "use a separate account per Live run."),
                    detail=(f"latest: {update.event} of order {remote.id} (client_order_id {remote.client_order_id}) at "
                            f"{when:%Y-%m-%d %H:%M:%S} UTC, {plain(update.qty or ZERO)} @ {plain(update.price or ZERO)}"),
                )
            return
        if remote.id:
            order.broker_order_id = remote.id
        if order.unknown_since is not None:
            order.unknown_since = None
            if order.reason == UNKNOWN_REASON:
                order.reason = ""
        event = update.event
        if event in ("fill", "partial_fill"):
            if not update.execution_id or update.execution_id in self.execution_ids:
                return
            if update.qty is None or update.price is None or update.qty <= 0:
                return
            self._book_fill(order, update.execution_id, update.qty, update.price, remote.side, when, notify=True,
                            final=event == "fill")
        elif event in _FINAL_EVENTS:
            state = _FINAL_EVENTS[event]
            if order.state in _OPEN_STATES:
                if state is OrderState.REJECTED:
                    self._refuse(order, "rejected by the broker", when)
                else:
                    self._finish(order, state, f"{event} at the broker", when)
        elif order.state is OrderState.PENDING:  # new, accepted, pending_new …
            order.state = OrderState.WORKING
            self._changed(order, when)

    def _book_fill(self, order: LiveOrder, execution_id: str, qty: Decimal, price: Decimal, side: str, when: datetime,
                   *, notify: bool, final: bool | None = None) -> None:
        if execution_id in self.execution_ids:
            return
        self.execution_ids.add(execution_id)
        instrument = order.instrument or self.instrument_for(order.symbol)
        order.instrument = instrument
        signed = qty if side == "buy" else -qty
        if instrument is not None:
            self.portfolio.apply_fill(instrument, signed, price, ZERO, when, order.order_id)
        order.book_fill(qty, price)
        if not order.side:
            order.side = side
        if order.quantity is not None and order.filled_quantity > order.quantity:
            order.quantity = order.filled_quantity  # the broker's word is final
        fill = FillRecord(execution_id, order.order_id, when, order.symbol, order.asset_type, side, qty, price, ZERO)
        self.fills.append(fill)
        self.new_fills.append(fill)
        done = final if final is not None else (order.quantity is not None and order.filled_quantity >= order.quantity)
        if done:
            self._finish(order, OrderState.FILLED, "", when, notify=notify, last=(qty, price))
        else:
            order.state = OrderState.PARTIALLY_FILLED
            self._changed(order, when, notify=notify, last=(qty, price))

    def poll(self, now: datetime) -> None:
        """Between events: apply stream updates, look up unknown orders, reconcile when due."""
        self.drain(now)
        monotonic = wallclock.monotonic()
        for order in list(self.open_orders.values()):
            if order.unknown_since is not None and monotonic - order.last_lookup >= UNKNOWN_LOOKUP_SECONDS:
                self._resolve_unknown(order, now, monotonic)
        if monotonic - self.last_reconcile >= self.reconcile_seconds:
            self.reconcile(now)

    def _lookup(self, order: LiveOrder) -> AlpacaOrder | None:
        order.last_lookup = wallclock.monotonic()
        try:
            with self._unwatched():
                return self.gateway.order_by_client_order_id(order.client_order_id)
        except AlpacaError as exc:
            self._broker_problem(exc, f"looking up order {order.order_id}")
            return None

    def _resolve_unknown(self, order: LiveOrder, now: datetime, monotonic: float) -> None:
        remote = self._lookup(order)
        if remote is not None:
            self._adopt(order, remote, now, notify=True)
        elif monotonic - order.unknown_since >= self.unknown_give_up_seconds:
            self.open_orders.pop(order.order_id, None)
            self._refuse(order, (f"not received by the broker: no order with client_order_id {order.client_order_id} "
                                 f"{self.unknown_give_up_seconds:g} s after it was sent"), now)

    # -- reconciliation ---------------------------------------------------------------------
    def reconcile(self, now: datetime) -> Reconciliation | None:
        """Compare the run's positions and cash with the broker's; report drift, halt beyond the tolerance."""
        self.last_reconcile = wallclock.monotonic()
        try:
            with self._unwatched():
                account = self.gateway.account()
                positions = self.gateway.positions()
        except AlpacaError as exc:
            self._broker_problem(exc, "reconciling positions and cash")
            return None
        self.drain(now)  # updates that arrived while asking
        result = Reconciliation(taken_at=now, account=account, positions=positions)
        broker_quantities = {p.symbol: p.qty for p in positions}
        run_quantities: dict[str, Decimal] = {}
        prices: dict[str, Decimal] = {}
        for position in self.portfolio.open_positions:
            instrument = position.instrument
            run_quantities[instrument.symbol] = run_quantities.get(instrument.symbol, ZERO) + position.quantity
            if instrument.last_close is not None:
                prices[instrument.symbol] = Decimal(repr(instrument.last_close))
            else:
                prices[instrument.symbol] = position.average_price
        for p in positions:
            prices[p.symbol] = p.current_price or prices.get(p.symbol) or p.avg_entry_price
        # Orders in flight: their fills may be booked at the broker before the stream tells us.
        in_flight = {o.symbol for o in self.open_orders.values()}
        for symbol in sorted(set(broker_quantities) | set(run_quantities) | set(self.baseline)):
            if symbol in in_flight:
                continue
            expected = run_quantities.get(symbol, ZERO)
            actual = broker_quantities.get(symbol, ZERO) - self.baseline.get(symbol, ZERO)
            if actual != expected:
                result.position_drift[symbol] = (expected, actual)
                result.drift_value += abs(actual - expected) * prices.get(symbol, ZERO)
        if not in_flight:
            result.cash_drift = account.cash - self.portfolio.cash
            if abs(result.cash_drift) >= CASH_EPSILON:
                result.drift_value += abs(result.cash_drift)
            else:
                result.cash_drift = ZERO
        self.last_reconciliation = result
        self.on_reconciled(result)
        if not result.position_drift and not result.cash_drift:
            self.drift_seen_before = False
            return result
        tolerance = max(DRIFT_TOLERANCE_MINIMUM, abs(self.portfolio.value()) * DRIFT_TOLERANCE_FRACTION)
        lines = [f"{symbol}: run {plain(expected)}, broker {plain(actual)}" + (" (less what the account held before the run)" if symbol in self.baseline else "")
                 for symbol, (expected, actual) in result.position_drift.items()]
        if result.cash_drift:
            lines.append(f"cash: run {self.portfolio.cash:,.2f}, broker {account.cash:,.2f}")
        detail = f"at {now:%Y-%m-%d %H:%M:%S} UTC; drift worth {result.drift_value:,.2f}, tolerance {tolerance:,.2f}\n" + "\n".join(lines)
        if result.drift_value > tolerance and self.drift_seen_before:
            self.halt(f"positions or cash differ from the broker's by {result.drift_value:,.2f}, beyond the tolerance {tolerance:,.2f}")
            self.issues.report(
                BROKER_DRIFT_HALT, key="halt",
                message=("The run's positions or cash differ from the broker account's beyond the tolerance, at two checks in a row: "
                         "the run was halted and sends no further orders. Find who else trades the account, then start a new run."),
                detail=detail,
            )
        else:
            self.issues.report(
                BROKER_DRIFT, key="drift",
                message=("The run's positions or cash differ from the broker account's (see detail). A trade made outside this run, "
                         "a transfer or a fee can cause it; beyond the tolerance the run halts."),
                detail=detail,
            )
        self.drift_seen_before = result.drift_value > tolerance
        return result

    def halt(self, reason: str) -> None:
        self.halted = reason
        self.accepting = False

    # -- stopping ---------------------------------------------------------------------------
    def stop(self, now: datetime, *, wait_seconds: float = CANCEL_WAIT_SECONDS, positions_issue: bool = True) -> None:
        """The run ends (killed, halted or done): no more orders; the working ones are cancelled
        at the broker and their confirmations awaited; positions are left as they are, and an
        issue lists the open ones."""
        self.accepting = False
        self.drain(now)
        for order in list(self.open_orders.values()):
            if order.unknown_since is not None:
                remote = self._lookup(order)
                if remote is not None:
                    self._adopt(order, remote, now, notify=False)
            if order.order_id in self.open_orders:
                self.cancel(order, now=now, reason="the run ended", notify=False)
        deadline = wallclock.monotonic() + wait_seconds
        while self.open_orders and wallclock.monotonic() < deadline:
            self.drain(now, wait=0.2)
            for order in list(self.open_orders.values()):
                if not order.cancel_sent:
                    remote = self._lookup(order)
                    if remote is not None:
                        self._adopt(order, remote, now, notify=False)
                        if order.order_id in self.open_orders:
                            self.cancel(order, now=now, reason="the run ended", notify=False)
        for order in list(self.open_orders.values()):
            remote = self._lookup(order) if order.broker_order_id or order.unknown_since is not None else None
            if remote is not None:
                self._adopt(order, remote, now, notify=False)
        if not self.halted:
            self.reconcile(now)  # the broker's values as the run leaves them (no halting now: nothing more is sent)
        if positions_issue:
            self.report_open_positions(now)

    def report_open_positions(self, now: datetime) -> None:
        positions = [p for p in self.portfolio.open_positions if p.quantity]
        if not positions:
            return
        lines = [f"{p.instrument.symbol}: {plain(p.quantity)} @ average {plain(money(p.average_price))}" for p in positions]
        still_open = [o for o in self.open_orders.values()]
        if still_open:
            lines.append("orders the broker had not confirmed as cancelled: " + ", ".join(o.client_order_id for o in still_open))
        self.issues.report(
            POSITIONS_LEFT_OPEN, key="positions",
            message=(f"The run ended with {len(positions)} open position{'s' if len(positions) > 1 else ''} at the broker, left "
                     "open as Live never closes positions: close them at the broker if they should not be held."),
            detail=f"at {now:%Y-%m-%d %H:%M:%S} UTC\n" + "\n".join(lines),
        )

    # -- state changes ----------------------------------------------------------------------
    def _changed(self, order: LiveOrder, when: datetime, *, notify: bool = True, last=None) -> None:
        order.updated_at = when
        self.changed[order.order_id] = order
        if notify:
            last_quantity, last_price = last if last is not None else (None, None)
            self.listener.order_changed(order, when, last_quantity, last_price)

    def _finish(self, order: LiveOrder, state: OrderState, reason: str, when: datetime, *, notify: bool = True, last=None) -> None:
        order.state = state
        order.reason = reason
        self.open_orders.pop(order.order_id, None)
        self._changed(order, when, notify=notify, last=last)

    def _refuse(self, order: LiveOrder, reason: str, when: datetime) -> None:
        self._finish(order, OrderState.REJECTED, reason, when)
        category = reason.split(":", 1)[0]
        self.issues.report(
            BROKER_REJECTED, key=category,
            message=f"Orders were refused ({category}): see the detail for the latest and the reason the broker gave.",
            detail=f"latest: order {order.order_id} ({order.intent.name} {order.symbol}, {order.client_order_id}) at {when:%Y-%m-%d %H:%M:%S} UTC: {reason}",
        )

    def _broker_problem(self, exc: AlpacaError, doing: str) -> None:
        if isinstance(exc, AlpacaAuthError):
            self.issues.report(
                BROKER_AUTH, key="auth",
                message=f"The broker refused the account's credentials while {doing}: check the key id and secret in the environment variables the broker account names.",
                detail=exc.message,
            )
            return
        kind = "timeout" if isinstance(exc, AlpacaUnavailable) else type(exc).__name__
        self.issues.report(
            BROKER_UNAVAILABLE, key=kind,
            message=f"The broker could not be reached or failed while {doing}; the run keeps trying.",
            detail=f"at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC: {exc.message}",
        )


def _state_of(remote: AlpacaOrder) -> OrderState:
    status = remote.status
    if status == "filled":
        return OrderState.FILLED
    if status == "partially_filled":
        return OrderState.PARTIALLY_FILLED
    if status in ("canceled", "replaced", "stopped", "suspended"):
        return OrderState.CANCELLED
    if status in ("expired", "done_for_day"):
        return OrderState.EXPIRED
    if status == "rejected":
        return OrderState.REJECTED
    return OrderState.WORKING


def kernel_instrument(kernel, symbol: str) -> Instrument | None:
    """The kernel's instrument for an equity symbol, made as a Subscribe would make it. A
    resumed run needs its instruments before on_start subscribes again (its positions live on them)."""
    key = (symbol, AssetType.EQUITY)
    instrument = kernel.instruments.get(key)
    if instrument is not None:
        return instrument
    security = kernel.market_data.security(symbol, AssetType.EQUITY)
    if security is None:
        return None
    instrument = Instrument(security)
    instrument.sessions = sessions_between(calendar_for(AssetType.EQUITY, kernel.calendar), kernel.start, kernel.end)
    kernel.instruments[key] = instrument
    kernel.instruments_by_symbol.setdefault(symbol, []).append(instrument)
    return instrument
