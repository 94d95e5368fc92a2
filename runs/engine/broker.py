"""The simulated broker (product.md §6): order book per instrument, fills against bars, rejections.

Fill rules, per bar of the instrument's finest subscription, for orders placed before the bar
opened (an order placed while handling the bar at t is first evaluated on the next bar):
- market: the bar's open, moved `slippage_bps` against the trader;
- limit: at the open when the open is at or better than the limit, else at the limit when the
  bar trades through it (a buy needs low < limit, a sell high > limit); no slippage;
- stop: triggers when the bar reaches the stop (buy: high >= stop, sell: low <= stop) and fills
  at the worse of the open and the stop (gaps respected), slippage applied;
- stop-limit: triggers like a stop; in the triggering bar it fills only at the trigger price
  (the worse of open and stop) and only when that is within the limit; otherwise it rests as a
  limit order from the next bar on. We do not guess the path inside a bar.
Fills at the open are stamped with the bar's open time, fills inside the bar with its close time.

Orders placed at or after a session's close work in the next session; DAY orders expire at the
close of the session they work in. Checks made when a fill would happen (the price is known
then): short selling, risk limits and buying power; orders that only reduce a position are never
refused by the last two. Notional orders are sized at each fill.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol

from runs.engine.core_settings import CoreSettings
from runs.engine.decimals import BPS, ONE, ZERO, floor_to, money, plain, price_from_float
from runs.engine.feed import Instrument, from_ns
from runs.engine.ledger import Portfolio
from runs.engine.records import FillRecord, OrderRecord
from strategies.sdk.enums import AssetType, Intent, OrderState, OrderType, TimeInForce

FRACTION_STEP = Decimal("0.000001")
NEVER = 2**63 - 1

# Rejection categories: the order's reason starts with one; issues are aggregated per category.
INSUFFICIENT_BUYING_POWER = "insufficient buying power"
SHORT_NOT_ALLOWED = "short not allowed"
QUANTITY_NOT_POSITIVE = "quantity not positive"
FRACTIONAL_NOT_ALLOWED = "fractional quantity not allowed"
UNKNOWN_SYMBOL = "unknown symbol"
RISK_LIMIT = "risk limit"
MARKET_CLOSED = "market closed"

# Enum members bound once: on Python 3.11 each `Intent.BUY` goes through the enum metaclass's
# attribute hook (~0.1 µs), and placing and filling one order reads a few dozen of them.
BUY, SELL, CLOSE, BUY_TO_CLOSE, SELL_TO_CLOSE = Intent.BUY, Intent.SELL, Intent.CLOSE, Intent.BUY_TO_CLOSE, Intent.SELL_TO_CLOSE
MARKET, LIMIT, STOP, STOP_LIMIT = OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT
PENDING, WORKING, PARTIALLY_FILLED, FILLED = OrderState.PENDING, OrderState.WORKING, OrderState.PARTIALLY_FILLED, OrderState.FILLED
CANCELLED, REJECTED, EXPIRED = OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED
DAY_ORDER = TimeInForce.DAY

_CLOSING = (CLOSE, SELL_TO_CLOSE, BUY_TO_CLOSE)


class Order:
    __slots__ = (
        "order_id", "client_order_id", "instrument", "symbol", "asset_type", "intent", "order_type", "time_in_force",
        "quantity", "notional", "limit_price", "stop_price", "limit_float", "stop_float", "tag", "side", "state",
        "filled_quantity", "filled_cost", "average_fill_price", "commission", "notional_spent", "reason",
        "created_at", "updated_at", "active_from_ns", "expire_ns", "triggered",
    )

    def __init__(self, order_id, client_order_id, instrument, symbol, asset_type, intent, order_type, time_in_force,
                 quantity, notional, limit_price, stop_price, tag, side, created_at):
        self.order_id = order_id
        self.client_order_id = client_order_id
        self.instrument = instrument
        self.symbol = symbol
        self.asset_type = asset_type
        self.intent = intent
        self.order_type = order_type
        self.time_in_force = time_in_force
        self.quantity = quantity
        self.notional = notional
        self.limit_price = limit_price
        self.stop_price = stop_price
        self.limit_float = float(limit_price) if limit_price is not None else None
        self.stop_float = float(stop_price) if stop_price is not None else None
        self.tag = tag
        self.side = side
        self.state = PENDING
        self.filled_quantity = ZERO
        self.filled_cost = ZERO
        self.average_fill_price = None
        self.commission = ZERO
        self.notional_spent = ZERO
        self.reason = ""
        self.created_at = self.updated_at = created_at
        self.active_from_ns = 0
        self.expire_ns = NEVER
        self.triggered = False

    def book_fill(self, quantity: Decimal, price: Decimal) -> None:
        """Add a fill of `quantity` at `price` to the filled quantity and its average price."""
        if self.filled_quantity:
            self.filled_quantity += quantity
            self.filled_cost += quantity * price
            self.average_fill_price = money(self.filled_cost / self.filled_quantity)
        else:
            self.filled_quantity, self.filled_cost, self.average_fill_price = quantity, quantity * price, price

    def record(self) -> OrderRecord:
        return OrderRecord(
            self.order_id, self.client_order_id, self.symbol, self.asset_type, self.intent, self.side, self.order_type,
            self.time_in_force, self.quantity, self.notional, self.limit_price, self.stop_price, self.state,
            self.filled_quantity, self.average_fill_price, self.commission, self.reason[:300], self.tag or "",
            self.created_at, self.updated_at,
        )


class BrokerListener(Protocol):
    """What the broker tells the dispatcher (which turns it into events and issues)."""

    def order_changed(self, order: Order, time: datetime, last_quantity: Decimal | None, last_price: Decimal | None) -> None: ...

    def order_rejected(self, order: Order, category: str) -> None: ...


class EngineBroker(Protocol):
    """What the kernel (dispatch.py) and the run loops use of a broker: SimulatedBroker here, a
    real account's broker elsewhere (passed as `Kernel(broker_factory=...)`).

    Orders are the engine's `Order` (or an object with the same fields and `record()`); the
    broker tells its listener (the kernel) of every change with `order_changed` and of every
    rejection with `order_rejected`, and keeps `changed` / `new_fills` for the next batch (the
    kernel empties both after each flush). The real-time loop (realtime.run_realtime) also
    calls `prepare(now)`, `poll(now)` and `stop(now)` when a broker has them (a real account)."""

    open_orders: dict[int, Order]  # working orders by order id (ctx.open_orders, cancels)
    last_order_id: int  # ids run 1..last_order_id; CancelOrder checks against it
    changed: dict[int, Order]  # orders to snapshot in the next batch
    fills: list[FillRecord]  # every fill of the run (round trips, metrics)
    new_fills: list[FillRecord]  # fills since the last batch
    next_expiry_ns: int  # earliest DAY-order expiry the kernel must run `expire_due` for; NEVER if none
    accepting: bool  # False once the run is stopping: new orders are rejected (market closed)

    def place(
        self, instrument: Instrument | None, symbol: str, asset_type: AssetType, intent: Intent, quantity: Decimal | None,
        notional: Decimal | None, order_type: OrderType, limit_price: Decimal | None, stop_price: Decimal | None,
        time_in_force: TimeInForce, tag: str | None, now_ns: int, now: datetime,
    ) -> Order: ...

    def cancel(self, order: Order, *, now: datetime, reason: str, notify: bool = True) -> None: ...

    def expire_due(self, until_ns: int, *, inclusive: bool) -> None: ...

    def expire_instrument(self, instrument: Instrument, until_ns: int) -> None: ...

    def evaluate(
        self, instrument: Instrument, bar_open_ns: int, close_ns: int, open_: float, high: float, low: float, volume: float,
    ) -> None:
        """A bar of the instrument's finest subscription completed: simulated brokers fill
        against it; a real account's broker has nothing to do."""


class SimulatedBroker:
    def __init__(self, *, core: CoreSettings, portfolio: Portfolio, client_order_prefix: str, end_ns: int, listener: BrokerListener):
        self.core = core
        self.portfolio = portfolio
        self.prefix = client_order_prefix
        self.end_ns = end_ns
        self.listener = listener
        self.open_orders: dict[int, Order] = {}
        self.changed: dict[int, Order] = {}  # orders to snapshot in the next batch
        self.fills: list[FillRecord] = []
        self.new_fills: list[FillRecord] = []
        self.last_order_id = 0
        self.next_expiry_ns = NEVER
        self.accepting = True  # False once the run is ending: no session is left for new orders
        self._free = core.commission.is_free
        # The latest moment made a datetime (ns, datetime): a market order placed at a bar's
        # close fills at the next bar's open, the same moment, and shares its datetime object
        # (one fewer to make, and the record writer converts a shared one once).
        self._moment: tuple[int, datetime | None] = (-1, None)
        self._slip_buy = ONE + core.slippage_bps / BPS
        self._slip_sell = ONE - core.slippage_bps / BPS

    # -- placing and cancelling -------------------------------------------------------------
    def place(
        self,
        instrument: Instrument | None,
        symbol: str,
        asset_type: AssetType,
        intent: Intent,
        quantity: Decimal | None,
        notional: Decimal | None,
        order_type: OrderType,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        time_in_force: TimeInForce,
        tag: str | None,
        now_ns: int,
        now: datetime,
    ) -> Order:
        self.last_order_id = order_id = self.last_order_id + 1
        self._moment = (now_ns, now)
        closing = intent is CLOSE
        order = Order(
            order_id, f"{self.prefix}-{order_id}", instrument, symbol, asset_type, intent, order_type, time_in_force,
            None if closing else quantity, None if closing else notional, limit_price, stop_price, tag,
            self._side(intent, instrument), now,
        )
        self.changed[order_id] = order
        sessions = instrument.sessions if instrument is not None else None
        session = sessions.working_session(now_ns) if sessions is not None else 0
        problem = self._placement_problem(order, instrument, session)
        if problem is not None:
            if order.quantity is not None and order.quantity < 0:
                order.quantity = None  # kept in the reason; a stored order's quantity is never below its fills
            self._reject(order, *problem, now)
            return order
        order.active_from_ns = max(now_ns, sessions.open_list[session])
        if time_in_force is DAY_ORDER:
            order.expire_ns = expire_ns = sessions.close_list[session]
            if expire_ns < self.next_expiry_ns:
                self.next_expiry_ns = expire_ns
        order.state = WORKING
        instrument.orders.append(order)
        self.open_orders[order_id] = order
        self.listener.order_changed(order, now, None, None)
        return order

    def _placement_problem(self, order: Order, instrument: Instrument | None, session: int) -> tuple[str, str] | None:
        """Why the order cannot work (category, detail), or None; `session` is the index of the
        instrument's session the order would work in."""
        if instrument is None:
            return UNKNOWN_SYMBOL, (
                f"{order.symbol} ({order.asset_type}) is not subscribed: add Subscribe(\"{order.symbol}\", ...) to on_start"
            )
        quantity = order.quantity
        amount = quantity if quantity is not None else order.notional
        if order.intent is not CLOSE and amount <= 0:
            field = "quantity" if quantity is not None else "notional"
            return QUANTITY_NOT_POSITIVE, f"{field} is {plain(amount)}: it must be greater than 0"
        if quantity is not None and quantity != quantity.to_integral_value() and not instrument.security.fractionable:
            return FRACTIONAL_NOT_ALLOWED, f"{order.symbol} trades in whole units only: quantity {plain(quantity)} must be a whole number"
        if not self.accepting:
            return MARKET_CLOSED, "the run has ended: no session is left to work the order in"
        sessions = instrument.sessions
        if session >= len(sessions.close_list) or sessions.open_list[session] >= self.end_ns:
            return MARKET_CLOSED, f"no {sessions.name} session opens before the backtest ends"
        return None

    def cancel(self, order: Order, *, now: datetime, reason: str, notify: bool = True) -> None:
        self._finish(order, CANCELLED, reason, now, notify=notify)

    # -- expiry -----------------------------------------------------------------------------
    def expire_due(self, until_ns: int, *, inclusive: bool) -> None:
        """Expire DAY orders whose session closed before `until_ns` (or at it, if inclusive)."""
        for order in list(self.open_orders.values()):
            due = order.expire_ns <= until_ns if inclusive else order.expire_ns < until_ns
            if due:
                self._expire(order)
        self.next_expiry_ns = min((o.expire_ns for o in self.open_orders.values()), default=NEVER)

    def expire_instrument(self, instrument: Instrument, until_ns: int) -> None:
        """After a bar of the instrument closing at `until_ns`: its DAY orders of sessions closed by then."""
        for order in list(instrument.orders):
            if order.expire_ns <= until_ns:
                self._expire(order)
        self.next_expiry_ns = min((o.expire_ns for o in self.open_orders.values()), default=NEVER)

    def _expire(self, order: Order) -> None:
        self._finish(order, EXPIRED, "DAY order expired at the session close", from_ns(order.expire_ns))

    # -- fills ------------------------------------------------------------------------------
    def evaluate(
        self, instrument: Instrument, bar_open_ns: int, close_ns: int, open_: float, high: float, low: float, volume: float,
    ) -> None:
        """Try every working order of the instrument against one bar (trading from
        `bar_open_ns`, closing at `close_ns`). With core.max_volume_participation,
        the orders share that fraction of the bar's volume, oldest first."""
        participation = self.core.max_volume_participation
        step = FRACTION_STEP if instrument.security.fractionable else ONE
        volume_left = floor_to(Decimal(repr(volume)) * participation, step) if participation is not None else None
        for order in tuple(instrument.orders):
            if bar_open_ns < order.active_from_ns:  # placed after this bar opened
                continue
            filled = self._try_fill(order, instrument, bar_open_ns, close_ns, open_, high, low, volume_left, step)
            if volume_left is not None and filled:
                volume_left -= filled

    def _try_fill(self, order, instrument, bar_open_ns, close_ns, open_, high, low, volume_left, step) -> Decimal:
        held = instrument.position.quantity if instrument.position is not None else ZERO
        intent = order.intent
        if intent is CLOSE:
            buying = held < 0
        else:
            buying = intent is BUY or intent is BUY_TO_CLOSE
        if (intent is CLOSE and held == 0) or (intent is SELL_TO_CLOSE and held <= 0) or (
            intent is BUY_TO_CLOSE and held >= 0
        ):
            self._finish(order, CANCELLED, "nothing to close: the position is flat" if held == 0 else
                         f"nothing to close: the position is {'short' if held < 0 else 'long'}", from_ns(bar_open_ns))
            return ZERO
        priced = self._fill_price(order, buying, open_, high, low)
        if priced is None:
            return ZERO
        price, at_open = priced
        # The fill's datetime, made only for an order that fills.
        fill_ns = bar_open_ns if at_open else close_ns
        moment_ns, time = self._moment
        if moment_ns != fill_ns:
            time = from_ns(fill_ns)
            self._moment = (fill_ns, time)
        multiplier = instrument.multiplier

        # How much: what the intent asks for, then what the notional buys, then the volume cap.
        if intent is CLOSE:
            wanted = abs(held)
        elif order.notional is not None:
            wanted = self._size_for_notional(order, price * multiplier, step)
            if wanted == 0:
                if order.filled_quantity == 0:
                    self._reject(order, QUANTITY_NOT_POSITIVE, (
                        f"notional {order.notional:,.2f} buys less than {step} {order.symbol} at {plain(price)}"
                        + ("" if self.core.commission.is_free else " with commission")
                        + ": raise the notional"
                    ), time)
                else:
                    self._finish(order, FILLED, "", time)
                return ZERO
        else:
            wanted = order.quantity - order.filled_quantity
        if intent is SELL_TO_CLOSE or intent is BUY_TO_CLOSE:
            wanted = min(wanted, abs(held))
        if volume_left is not None:
            wanted = min(wanted, volume_left)
            if wanted <= 0:
                return ZERO  # no volume left in this bar; try again on the next one
        signed = wanted if buying else -wanted
        after = held + signed

        if after < 0 and not self.core.allow_short and intent is SELL:
            self._reject(order, SHORT_NOT_ALLOWED, (
                f"selling {plain(wanted)} {order.symbol} would leave a position of {plain(after)}: use SELL_TO_CLOSE to exit, "
                "or set core.allow_short"
            ), time)
            return ZERO
        commission = ZERO if self._free else self.core.commission.for_fill(
            quantity=wanted,
            notional=wanted * price * multiplier,
            order_quantity_after=order.filled_quantity + wanted,
            charged=order.commission,
        )
        if abs(after) > abs(held) or (after != 0 and (after > 0) != (held > 0)):
            problem = self._exposure_problem(order, instrument, held, after, wanted, price, commission)
            if problem is not None:
                self._reject(order, *problem, time)
                return ZERO

        self.portfolio.apply_fill(instrument, signed, price, commission, time, order.order_id)
        order.book_fill(wanted, price)
        order.commission += commission
        if order.notional is not None:
            order.notional_spent += wanted * price * multiplier + commission
        side = "buy" if buying else "sell"
        if not order.side:
            order.side = side
        fill = FillRecord(
            f"{order.client_order_id}-{len(self.fills) + 1}",
            order.order_id, time, order.symbol, order.asset_type, side, wanted, price, commission,
        )
        self.fills.append(fill)
        self.new_fills.append(fill)

        done, reason = self._is_done(order, after, price * multiplier, step)
        if done:
            order.reason = reason
            self._finish(order, FILLED, reason, time, last=(wanted, price))
        else:
            order.state = PARTIALLY_FILLED
            order.updated_at = time
            self.changed[order.order_id] = order
            self.listener.order_changed(order, time, wanted, price)
        return wanted

    def _is_done(self, order: Order, after: Decimal, unit_cost: Decimal, step: Decimal) -> tuple[bool, str]:
        intent = order.intent
        if intent is CLOSE:
            return after == 0, ""
        if order.notional is not None:
            if intent in _CLOSING and after == 0:
                return True, ""
            if order.notional - order.notional_spent < unit_cost * step:
                return True, ""  # not even one more unit fits
            return self._size_for_notional(order, unit_cost, step) == 0, ""
        if order.filled_quantity >= order.quantity:
            return True, ""
        if intent in _CLOSING and after == 0:
            return True, (
                f"filled {plain(order.filled_quantity)} of {plain(order.quantity)}: the position is closed and "
                f"{intent.name} never opens the other side"
            )
        return False, ""

    def _fill_price(self, order: Order, buying: bool, open_: float, high: float, low: float) -> tuple[Decimal, bool] | None:
        """(price, filled at the open?) for this bar, or None when the order does not fill."""
        order_type = order.order_type
        if order_type is MARKET:
            price = price_from_float(open_)
            return (self._slipped(price, buying) if self.core.slippage_bps else price), True
        if order_type is LIMIT or (order_type is STOP_LIMIT and order.triggered):
            limit = order.limit_float
            if buying:
                if open_ <= limit:
                    return price_from_float(open_), True
                return (order.limit_price, False) if low < limit else None
            if open_ >= limit:
                return price_from_float(open_), True
            return (order.limit_price, False) if high > limit else None
        stop = order.stop_float
        if buying:
            if open_ >= stop:
                trigger, at_open = price_from_float(open_), True
            elif high >= stop:
                trigger, at_open = order.stop_price, False
            else:
                return None
        elif open_ <= stop:
            trigger, at_open = price_from_float(open_), True
        elif low <= stop:
            trigger, at_open = order.stop_price, False
        else:
            return None
        if order_type is STOP:
            return self._slipped(trigger, buying), at_open
        order.triggered = True
        within = trigger <= order.limit_price if buying else trigger >= order.limit_price
        return (trigger, at_open) if within else None

    def _slipped(self, price: Decimal, buying: bool) -> Decimal:
        if not self.core.slippage_bps:
            return price
        return money(price * (self._slip_buy if buying else self._slip_sell))

    def _size_for_notional(self, order: Order, unit_cost: Decimal, step: Decimal) -> Decimal:
        """The largest quantity (a multiple of `step`) whose cost, commission included, fits in
        what is left of the order's notional."""
        budget = order.notional - order.notional_spent
        if budget <= 0:
            return ZERO
        most = floor_to(budget / unit_cost, step)  # what fits before commission
        if self._free or most <= 0:
            return most
        commission = self.core.commission

        def fits(steps: int) -> bool:
            quantity = steps * step
            fee = commission.for_fill(
                quantity=quantity,
                notional=quantity * unit_cost,
                order_quantity_after=order.filled_quantity + quantity,
                charged=order.commission,
            )
            return quantity * unit_cost + fee <= budget

        # The cost grows with the quantity: binary search over whole steps.
        low, high = 0, int(most / step)
        while low < high:
            middle = (low + high + 1) // 2
            if fits(middle):
                low = middle
            else:
                high = middle - 1
        return low * step

    def _exposure_problem(self, order, instrument, held, after, wanted, price, commission) -> tuple[str, str] | None:
        core = self.core
        multiplier = instrument.multiplier
        if core.max_order_value is not None:
            order_value = (order.filled_quantity + wanted) * price * multiplier
            if order_value > core.max_order_value:
                return RISK_LIMIT, (
                    f"order value {order_value:,.2f} is above core.max_order_value {core.max_order_value:,.2f}: "
                    "trade smaller or raise the limit"
                )
        position_value = abs(after) * price * multiplier
        if core.max_position_value is not None and position_value > core.max_position_value:
            return RISK_LIMIT, (
                f"the {order.symbol} position would be worth {position_value:,.2f}, above core.max_position_value "
                f"{core.max_position_value:,.2f}: trade smaller or raise the limit"
            )
        value, gross = self.portfolio.value_and_gross_at(instrument, price)
        equity_after = value - commission
        gross_after = gross - abs(held) * price * multiplier + position_value
        if equity_after <= 0 or gross_after > core.max_leverage * equity_after:
            return INSUFFICIENT_BUYING_POWER, (
                f"{'buying' if after > held else 'selling'} {plain(wanted)} {order.symbol} at {plain(price)} would take gross "
                f"exposure to {gross_after:,.2f} against a portfolio value of {equity_after:,.2f} (core.max_leverage "
                f"{core.max_leverage}): size orders from ctx.cash or ctx.portfolio_value"
            )
        return None

    # -- state changes ----------------------------------------------------------------------
    def _reject(self, order: Order, category: str, detail: str, time: datetime) -> None:
        self._finish(order, REJECTED, f"{category}: {detail}", time)
        self.listener.order_rejected(order, category)

    def _finish(self, order: Order, state: OrderState, reason: str, time: datetime, *, notify: bool = True, last=None) -> None:
        order.state = state
        order.reason = reason
        order.updated_at = time
        self.changed[order.order_id] = order
        self.open_orders.pop(order.order_id, None)
        if order.instrument is not None and order in order.instrument.orders:
            order.instrument.orders.remove(order)
        if notify:
            last_quantity, last_price = last if last is not None else (None, None)
            self.listener.order_changed(order, time, last_quantity, last_price)

    @staticmethod
    def _side(intent: Intent, instrument: Instrument | None) -> str:
        if intent is BUY or intent is BUY_TO_CLOSE:
            return "buy"
        if intent is SELL or intent is SELL_TO_CLOSE:
            return "sell"
        held = instrument.position.quantity if instrument is not None and instrument.position is not None else ZERO
        return "sell" if held > 0 else "buy" if held < 0 else ""
