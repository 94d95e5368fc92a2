"""Cash and positions, in Decimal.

Cash changes only through ledger entries, so Σ entries == cash at every moment:
- equities: a fill moves cash by its notional (`trade`) and its commission (`commission`);
- futures: opening moves no cash; closing (part of) a position books the realized P&L
  (price difference × quantity × multiplier) as `variation_margin`; commissions as for equities.
Positions carry a signed quantity and an average cost; reducing a position realises P&L against
that average, and going through zero flips it at the fill price.

A position's market value is what it adds to the portfolio value: quantity × price ×
multiplier for an equity, the unrealized P&L for a future (its notional is not the account's).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from runs.engine.decimals import ZERO, from_units, money, price_units, to_units
from runs.engine.feed import Instrument
from runs.engine.records import LedgerRecord, PositionRecord
from strategies.sdk.base import PositionView

_new_view = tuple.__new__


class Position:
    __slots__ = ("instrument", "quantity", "average_price", "realized_pnl", "units")

    def __init__(self, instrument: Instrument):
        self.instrument = instrument
        self.quantity = ZERO  # signed: negative is short
        self.average_price = ZERO
        self.realized_pnl = ZERO
        # The quantity as an int when the position's value is simply quantity × price (an
        # equity, whole quantity, multiplier 1): then it is valued in integer price units.
        self.units: int | None = 0


def mark_price(instrument: Instrument) -> Decimal | None:
    """The instrument's latest close as Decimal (8 places), converted once per new close."""
    close = instrument.last_close
    if close is None:
        return None
    if instrument.mark_close != close:
        instrument.mark_units = price_units(close)
        instrument.mark_close = close
        instrument.mark_price = None
    if instrument.mark_price is None:
        instrument.mark_price = from_units(instrument.mark_units)
    return instrument.mark_price


class Portfolio:
    def __init__(self):
        self.cash = ZERO
        self.cash_units = 0  # cash in units of 1e-8 (every amount is rounded to 8 places)
        self.cash_float = 0.0
        self.positions: dict[tuple, Position] = {}
        self.open_positions: list[Position] = []  # quantity != 0
        self.new_entries: list[LedgerRecord] = []  # since the last batch
        self.touched: dict[tuple, Position] = {}  # traded since the last batch
        # Counts changes of cash or positions: a backtest notes the portfolio's state for its
        # equity curve only when this moved (runs.engine.equity).
        self.revision = 0

    # -- cash -------------------------------------------------------------------------------
    def post(self, kind: str, amount: Decimal, time: datetime, order_id: int | None = None, description: str = "") -> None:
        self.revision += 1
        self.cash = cash = self.cash + amount
        self.cash_units += to_units(amount)
        self.cash_float = float(cash)
        self.new_entries.append(LedgerRecord(time, kind, amount, cash, order_id, description[:200]))

    def deposit(self, amount: Decimal, *, time: datetime, description: str) -> None:
        self.post("deposit", money(amount), time, None, description)

    # -- fills ------------------------------------------------------------------------------
    def apply_fill(self, instrument: Instrument, quantity: Decimal, price: Decimal, commission: Decimal, time: datetime, order_id: int) -> None:
        """Book a fill of signed `quantity` (positive buys) at `price`."""
        self.revision += 1
        position = instrument.position
        if position is None:
            position = instrument.position = self.positions[instrument.key] = Position(instrument)
        multiplier = instrument.multiplier
        held = position.quantity
        # !s: str() of a Decimal is several times faster than its __format__.
        description = f"{'buy' if quantity > 0 else 'sell'} {abs(quantity)!s} {instrument.symbol} @ {price!s}"
        realized = ZERO
        if held == 0:
            total = quantity
            position.average_price = price
        elif (held > 0) == (quantity > 0):
            total = held + quantity
            position.average_price = (position.average_price * abs(held) + price * abs(quantity)) / abs(total)
        else:
            closed = min(abs(quantity), abs(held))
            direction = 1 if held > 0 else -1
            realized = money((price - position.average_price) * closed * direction * multiplier)
            total = held + quantity
            if total == 0:
                position.average_price = ZERO
            elif (total > 0) != (held > 0):
                position.average_price = price  # flipped: the rest is a new position at this price
        position.realized_pnl += realized
        if instrument.is_future:
            if realized:
                self.post("variation_margin", realized, time, order_id, "realized P&L: " + description)
        else:
            self.post("trade", money(-quantity * price * multiplier), time, order_id, description)
        if commission:
            self.post("commission", -commission, time, order_id, "commission: " + description)
        was_open = held != 0
        position.quantity = total
        position.units = int(total) if instrument.values_whole_units and total == total.to_integral_value() else None
        if was_open and total == 0:
            self.open_positions.remove(position)
        elif not was_open and total != 0:
            self.open_positions.append(position)
        self.touched[instrument.key] = position

    # -- valuation --------------------------------------------------------------------------
    def market_value(self, position: Position) -> Decimal:
        price = mark_price(position.instrument)
        if price is None:
            price = position.average_price
        return self._value_at(position, price)

    @staticmethod
    def _value_at(position: Position, price: Decimal) -> Decimal:
        instrument = position.instrument
        if instrument.is_future:
            return money((price - position.average_price) * position.quantity * instrument.multiplier)
        return money(position.quantity * price * instrument.multiplier)

    def unrealized_pnl(self, position: Position) -> Decimal:
        price = mark_price(position.instrument)
        if price is None or position.quantity == 0:
            return ZERO
        return money((price - position.average_price) * position.quantity * position.instrument.multiplier)

    def value_units(self) -> int | None:
        """Cash + Σ market values in units of 1e-8, when every open position is simple (see
        Position.units); None otherwise. The per-bar valuation of Paper and Live (a backtest
        values its curve in bulk by the same rules, runs.engine.equity)."""
        total = self.cash_units
        for position in self.open_positions:
            units = position.units
            if units is None:
                return None
            instrument = position.instrument
            close = instrument.last_close
            if close is None:
                return None
            if instrument.mark_close != close:
                instrument.mark_units = round(close * 100_000_000)
                instrument.mark_close = close
                instrument.mark_price = None
            total += units * instrument.mark_units
        return total

    def value(self) -> Decimal:
        """Cash + Σ market values (the portfolio value)."""
        units = self.value_units()
        if units is not None:
            return from_units(units)
        total = self.cash
        for position in self.open_positions:
            total += self.market_value(position)
        return total

    def value_and_gross_at(self, instrument: Instrument, price: Decimal) -> tuple[Decimal, Decimal]:
        """Portfolio value and gross exposure (Σ |notional|, futures at contract notional),
        with `instrument` marked at `price` and the others at their latest closes."""
        value, gross = self.cash, ZERO
        for position in self.open_positions:
            at = price if position.instrument is instrument else (mark_price(position.instrument) or position.average_price)
            value += self._value_at(position, at)
            gross += abs(position.quantity * at * position.instrument.multiplier)
        return value, gross

    # -- views and records ------------------------------------------------------------------
    def view(self, instrument: Instrument) -> PositionView:
        """What ctx.position() returns (a strategy may ask on every bar: one mark, positional)."""
        position = instrument.position
        last = mark_price(instrument)
        # tuple.__new__ skips the named tuple's Python-level __new__ (half the cost of the view).
        if position is None:
            return _new_view(PositionView, (instrument.symbol, instrument.asset_type, ZERO, ZERO, last, ZERO, ZERO, ZERO))
        quantity = position.quantity
        if not quantity:
            return _new_view(PositionView, (
                instrument.symbol, instrument.asset_type, quantity, money(position.average_price), last, ZERO, ZERO, position.realized_pnl
            ))
        return _new_view(PositionView, (
            instrument.symbol,
            instrument.asset_type,
            quantity,
            money(position.average_price),
            last,
            self._value_at(position, position.average_price if last is None else last),
            ZERO if last is None else money((last - position.average_price) * quantity * instrument.multiplier),
            position.realized_pnl,
        ))

    def record(self, position: Position, time: datetime) -> PositionRecord:
        instrument = position.instrument
        return PositionRecord(
            symbol=instrument.symbol,
            asset_type=instrument.asset_type,
            quantity=position.quantity,
            average_price=money(position.average_price),
            last_price=mark_price(instrument),
            market_value=self.market_value(position) if position.quantity else ZERO,
            unrealized_pnl=self.unrealized_pnl(position),
            realized_pnl=position.realized_pnl,
            updated_at=time,
        )
