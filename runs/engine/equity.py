"""A backtest's equity curve, worked out in bulk rather than bar by bar.

The portfolio's value changes only when its cash or positions change (fills, deposits) or when a
close of an instrument it holds moves. So the replay loop only notes the portfolio's state at the
group ends where it changed (`ReplayEquity.note`), and the points of a range of bars — one per
group end (the last bar of the bars closing at one time, `MergedFeed.group_end`), marked at each
instrument's latest close of any of its subscriptions — are computed with numpy when a batch
needs them (`ReplayEquity.points`).

The values are the ones Portfolio.value() gives at those moments, as floats: cash plus each open
position's market value (ledger.py: quantity × price × multiplier for an equity, (price − average
price) × quantity × multiplier for a future, rounded to 8 places half to even; the price is the
close rounded to 8 places, or the average price before the instrument's first bar), summed as
integers in units of 1e-8 and divided by 1e8 once. That is the float nearest the exact value,
which is also what float() of the ledger's Decimal gives (its 28 digits hold these products
exactly; only a value past them could round differently there). The integers are int64 when
the terms of a state are bounded well inside it (checked per state from the instrument's highest
close), Python integers otherwise.
"""

from __future__ import annotations

from bisect import bisect_right
from decimal import Decimal
from fractions import Fraction
from math import gcd
from typing import NamedTuple

import numpy as np

from runs.engine.feed import Instrument, MergedFeed, Subscription
from runs.engine.ledger import Portfolio

UNITS_PER_PRICE = 100_000_000  # prices and amounts are counted in units of 1e-8
INT64_LIMIT = 2**63 - 1
SAFE_LIMIT = 2.0**62  # bounds are checked in floats against half of int64's range
FLOAT_EXACT_LIMIT = 2**53  # integers up to this convert to float64 exactly


class _InstrumentBars:
    """One instrument's bars in the merged feed: their feed indexes (None: every bar of the feed
    is this instrument's) and closes in units of 1e-8."""

    __slots__ = ("indexes", "close_units", "first_index", "highest_units")

    def __init__(self, indexes: np.ndarray | None, closes: np.ndarray):
        self.indexes = indexes
        # np.rint rounds half to even like round() in Portfolio.value_units / price_units.
        self.close_units = np.rint(closes * float(UNITS_PER_PRICE)).astype(np.int64)
        self.first_index = (0 if indexes is None else int(indexes[0])) if len(closes) else INT64_LIMIT
        self.highest_units = int(self.close_units.max()) if len(closes) else 0

    def closes_at(self, bar_indexes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(close units, has a close) at each feed index: the latest bar at or before it.
        `has` is None when every index has one."""
        if self.indexes is None:
            return self.close_units[bar_indexes], None
        if not len(self.indexes):  # an instrument without bars
            return np.zeros(len(bar_indexes), dtype=np.int64), np.zeros(len(bar_indexes), dtype=bool)
        position = np.searchsorted(self.indexes, bar_indexes, side="right") - 1
        has = position >= 0
        if has.all():
            return self.close_units[position], None
        return self.close_units[np.maximum(position, 0)], has


class ReplayEquity:
    """The equity points of a replay over `feed`, from the portfolio states noted along it."""

    def __init__(self, feed: MergedFeed, subscriptions: list[Subscription], portfolio: Portfolio):
        self.feed = feed
        self.portfolio = portfolio
        self.slots: dict[Instrument, int] = {}
        slot_of_subscription = np.zeros(max(len(subscriptions), 1), dtype=np.int64)
        for subscription in subscriptions:
            slot_of_subscription[subscription.index] = self.slots.setdefault(subscription.instrument, len(self.slots))
        self.slot_of_subscription = slot_of_subscription
        self._bars: dict[int, _InstrumentBars] = {}  # by slot, made when first needed
        # The noted states: from which feed index each holds (-1: from the start), the cash in
        # units and as a float, and the open positions (instrument, units, quantity, average price).
        self.noted_at: list[int] = []
        self.cash_units: list[int] = []
        self.cash_float: list[float] = []
        self.holdings: list[tuple] = []
        self.settled = 0  # the points of group ends before this feed index have been handed out

    def note(self, index: int) -> None:
        """The portfolio's state now holds from the group end at feed `index` on."""
        portfolio = self.portfolio
        self.noted_at.append(index)
        self.cash_units.append(portfolio.cash_units)
        self.cash_float.append(portfolio.cash_float)
        self.holdings.append(tuple([(p.instrument, p.units, p.quantity, p.average_price) for p in portfolio.open_positions]))

    def points(self, until: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The points of the group ends from the last call's `until` to `until` (exclusive) as
        (times ns, values, cash, invested): every state they use must have been noted."""
        first = self.settled
        ends = np.flatnonzero(self.feed.group_end[first:until]) + first if until > first else np.empty(0, dtype=np.int64)
        self.settled = max(first, until)
        if not len(ends):
            return ends, np.empty(0), np.empty(0), np.zeros(0, dtype=bool)
        state = np.searchsorted(np.asarray(self.noted_at, dtype=np.int64), ends, side="right") - 1
        if state[0] < 0:
            raise RuntimeError(f"no portfolio state noted before feed index {int(ends[0])}")
        states = _States(self)
        cash = np.asarray(self.cash_float, dtype=np.float64)[state]
        values = cash.copy()
        invested = states.count[state] > 0
        fast = invested & states.fits[state]
        if fast.any():
            values[fast] = _to_float(self._units_int64(ends[fast], state[fast], states))
        for point in np.flatnonzero(invested & ~states.fits[state]).tolist():
            values[point] = self._units_exact(int(ends[point]), int(state[point])) / UNITS_PER_PRICE
        self._forget_states_before(until)
        return self.feed.emit_ns[ends], values, cash, invested

    # -- internals ----------------------------------------------------------------------------
    def bars_of(self, slot: int) -> _InstrumentBars:
        bars = self._bars.get(slot)
        if bars is None:
            feed = self.feed
            if feed.subscription_index is None:
                mine = self.slot_of_subscription[feed.single_index] == slot
                bars = _InstrumentBars(None, feed.close) if mine else _InstrumentBars(np.empty(0, dtype=np.int64), np.empty(0))
            else:
                indexes = np.flatnonzero(self.slot_of_subscription[feed.subscription_index] == slot)
                bars = _InstrumentBars(indexes, feed.close[indexes])
            self._bars[slot] = bars
        return bars

    def _units_int64(self, ends: np.ndarray, state: np.ndarray, states: _States) -> np.ndarray:
        """Portfolio values in units at the group ends `ends` (each with at least one open
        position, in a state whose terms fit int64)."""
        counts = states.count[state]
        term = np.repeat(states.first[state], counts)
        if len(term) != len(ends):  # several positions: the k-th term of a point is first + k
            starts = np.cumsum(counts) - counts
            term += np.arange(len(term)) - np.repeat(starts, counts)
        bar = np.repeat(ends, counts)
        slot = states.slot[term]
        close = np.empty(len(term), dtype=np.int64)
        has_close = np.ones(len(term), dtype=bool)
        for each in np.unique(slot).tolist():
            mine = slot == each if len(states.slots_used) > 1 else slice(None)
            close[mine], has = self.bars_of(each).closes_at(bar[mine])
            if has is not None:
                has_close[mine] = has
        if states.all_plain:
            value = close * states.n[term]
        else:
            value = _round_terms(close, states, term)
        if not has_close.all():
            value[~has_close] = states.idle[term[~has_close]]
        units = np.add.reduceat(value, np.cumsum(counts) - counts) if len(term) != len(ends) else value
        return units + states.cash_units[state]

    def _units_exact(self, bar: int, state: int) -> int:
        """One point's value in units, in Python integers (a state too large for int64)."""
        total = self.cash_units[state]
        for instrument, _, quantity, average in self.holdings[state]:
            close, has = self.bars_of(self.slots[instrument]).closes_at(np.array([bar], dtype=np.int64))
            marked = None if has is not None and not has[0] else int(close[0])
            total += _market_value_units(instrument, quantity, average, marked)
        return total

    def _forget_states_before(self, until: int) -> None:
        """Keep the state holding at `until - 1` and the later ones; no later point needs the others."""
        keep_from = max(0, bisect_right(self.noted_at, until - 1) - 1)
        if keep_from:
            for column in (self.noted_at, self.cash_units, self.cash_float, self.holdings):
                del column[:keep_from]


class _States:
    """The noted states of a ReplayEquity as arrays: per state its number of open positions
    (`count`), the index of its first term (`first`), whether its value can be worked out in
    int64 (`fits`) and its cash in units; per term (an open position) its instrument's `slot`
    and the integers of _Terms. Whole-unit equities with multiplier 1, the usual case, are made
    as arrays; other positions, and the values before an instrument's first bar, one by one."""

    def __init__(self, equity: ReplayEquity):
        holdings = equity.holdings
        self.count = np.fromiter(map(len, holdings), dtype=np.int64, count=len(holdings))
        self.first = np.cumsum(self.count) - self.count
        terms = [term for holding in holdings for term in holding]  # (instrument, units, quantity, average price)
        size = len(terms)
        state_of_term = np.repeat(np.arange(len(holdings)), self.count)
        self.slot = np.fromiter((equity.slots[term[0]] for term in terms), dtype=np.int64, count=size)
        self.slots_used = np.unique(self.slot).tolist()
        highest = np.zeros(len(equity.slots), dtype=np.float64)
        first_bar = np.full(len(equity.slots), INT64_LIMIT, dtype=np.int64)
        for slot in self.slots_used:
            bars = equity.bars_of(slot)
            highest[slot], first_bar[slot] = bars.highest_units, bars.first_index
        columns = {name: np.zeros(size, dtype=np.int64) for name in _Terms._fields}
        columns["d"][:] = 1
        # `largest` bounds a term's intermediate products and value. Bounds are checked in floats
        # against half of int64's range: a state judged too large is only valued more slowly.
        units = np.array([0 if term[1] is None else term[1] for term in terms], dtype=np.float64)
        largest = np.maximum(np.abs(units) * highest[self.slot], np.abs(units))
        simple = np.fromiter((term[1] is not None for term in terms), dtype=bool, count=size)
        idle_needed = first_bar[self.slot] > np.asarray(equity.noted_at, dtype=np.int64)[state_of_term]
        plain = simple & ~idle_needed & (largest < SAFE_LIMIT)
        plain_terms = np.flatnonzero(plain)
        columns["n"][plain_terms] = [terms[index][1] for index in plain_terms.tolist()]
        others = np.flatnonzero(~plain).tolist()
        highest_of_others = highest[self.slot[others]].tolist()
        idle_of_others = idle_needed[others].tolist()
        kept, kept_terms = [], []
        made: dict[tuple, _Terms] = {}  # a position held unchanged through several states
        for index, highest_close, idle in zip(others, highest_of_others, idle_of_others, strict=True):
            instrument, _, quantity, average = key = terms[index]
            term = made.get((key, idle))
            if term is None:
                term = made[key, idle] = _terms(instrument, quantity, average, idle=idle)
            bound = max(highest_close * abs(term.n) + abs(term.offset), term.d, abs(term.idle))
            largest[index] = min(bound, float(INT64_LIMIT))
            if bound < SAFE_LIMIT:
                kept.append(index)
                kept_terms.append(term)
        if kept:
            for name, values in zip(_Terms._fields, np.array(kept_terms, dtype=np.int64).T, strict=True):
                columns[name][kept] = values
        for name, column in columns.items():
            setattr(self, name, column)
        self.all_plain = bool(plain.all())
        cash = np.array([float(value) for value in equity.cash_units])
        too_large = np.bincount(state_of_term, weights=largest >= SAFE_LIMIT, minlength=len(holdings)) > 0
        total = np.abs(cash) + np.bincount(state_of_term, weights=largest + 1, minlength=len(holdings))
        self.fits = ~too_large & (total < SAFE_LIMIT)
        self.cash_units = np.array(
            [value if fits else 0 for value, fits in zip(equity.cash_units, self.fits.tolist(), strict=True)], dtype=np.int64
        )


class _Terms(NamedTuple):
    """A position's market value in units at a close of c units is round_half_even(c × n / d −
    offset / d − f), with n / d its size (quantity × multiplier) and f in [0, 1) the fraction
    left of a future's cost (average × 1e8 × size) once `offset` / d has taken the whole part;
    an equity has no offset and no f. Rounding c × n / d − offset / d = q + r / d, the value is
    q, q − 1 or q + 1: one more when r > `above` (r == `above` with `above_tie`: a tie), one less
    when r < `below` (likewise). `idle` is the value before the instrument's first bar."""

    n: int
    d: int
    offset: int
    above: int
    above_tie: int
    below: int
    below_tie: int
    idle: int


def _terms(instrument: Instrument, quantity: Decimal, average_price: Decimal, *, idle: bool) -> _Terms:
    size_n, size_d = _ratio(quantity, instrument.multiplier)
    if instrument.is_future:
        average_n, average_d = average_price.as_integer_ratio()
        cost_n, cost_d = average_n * UNITS_PER_PRICE * size_n, average_d * size_d  # average × 1e8 × size
        whole, rest = divmod(cost_n, cost_d)  # f = rest / cost_d
    else:
        whole, rest, cost_d = 0, 0, 1
    # r / d − f > 1/2 ⟺ r > d × (2 rest + cost_d) / (2 cost_d); r / d − f < −1/2 ⟺ r < d × (2 rest − cost_d) / (2 cost_d)
    above, above_rest = divmod(size_d * (2 * rest + cost_d), 2 * cost_d)
    below_floor, below_rest = divmod(size_d * (2 * rest - cost_d), 2 * cost_d)
    below = below_floor + (below_rest != 0)  # the ceiling: r < x ⟺ r < ceil(x) for an integer r
    value_idle = _market_value_units(instrument, quantity, average_price, None) if idle else 0
    return _Terms(size_n, size_d, whole * size_d, above, above_rest == 0, below, below_rest == 0, value_idle)


def _market_value_units(instrument: Instrument, quantity: Decimal, average_price: Decimal, close_units: int | None) -> int:
    """Portfolio.market_value in units, from exact fractions: at the close, or before the
    instrument's first bar (None) at the average price, which leaves a future at zero."""
    size = Fraction(quantity) * Fraction(instrument.multiplier)
    average = Fraction(average_price) * UNITS_PER_PRICE
    price = average if close_units is None else Fraction(close_units)
    return round((price - average) * size if instrument.is_future else price * size)  # round(): half to even


def _ratio(quantity: Decimal, multiplier: Decimal) -> tuple[int, int]:
    """quantity × multiplier as a reduced fraction."""
    quantity_n, quantity_d = quantity.as_integer_ratio()
    multiplier_n, multiplier_d = multiplier.as_integer_ratio()
    numerator, denominator = quantity_n * multiplier_n, quantity_d * multiplier_d
    common = gcd(numerator, denominator)
    return numerator // common, denominator // common


def _round_terms(close: np.ndarray, states: _States, term: np.ndarray) -> np.ndarray:
    """Each term's value in units at its close (see _Terms), in int64."""
    quotient, remainder = np.divmod(close * states.n[term] - states.offset[term], states.d[term])
    odd = quotient % 2 == 1
    above, below = states.above[term], states.below[term]
    up = (remainder > above) | ((remainder == above) & (states.above_tie[term] == 1) & odd)
    down = (remainder < below) | ((remainder == below) & (states.below_tie[term] == 1) & odd)
    return quotient + up - down


def _to_float(units: np.ndarray) -> np.ndarray:
    """units / 1e8, correctly rounded as Python's int / int is (int64 beyond 2**53 would be
    rounded once more when made a float)."""
    values = units.astype(np.float64) / UNITS_PER_PRICE
    large = (units > FLOAT_EXACT_LIMIT) | (units < -FLOAT_EXACT_LIMIT)
    if large.any():
        values[large] = [value / UNITS_PER_PRICE for value in units[large].tolist()]
    return values
