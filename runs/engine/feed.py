"""Bars in, events out: subscriptions, their bars on the session grid, and the time-ordered merge.

A bar is emitted at its close: an intraday bar at open + frequency (cut at the session close,
so the last hourly bar of a 6.5 h session closes at the bell), a daily bar at its session's
close. Bars of several subscriptions are merged by emit time; ties go to the finer frequency
first, then to the subscription made first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from runs.engine.decimals import ONE
from runs.engine.records import BarArrays
from runs.engine.sessions import NS_PER_SECOND, Sessions
from strategies.sdk.base import SecurityInfo
from strategies.sdk.enums import AssetType, BarFrequency

FREQUENCY_RANK = {BarFrequency.SECOND: 0, BarFrequency.MINUTE: 1, BarFrequency.HOUR: 2, BarFrequency.DAY: 3}
# An intraday gap is reported when more than this many bars are missing between two bars of
# one session (a quiet stock may skip a minute; an hour without a bar is a hole in the data).
GAP_MISSING_BARS = {BarFrequency.SECOND: 60, BarFrequency.MINUTE: 5, BarFrequency.HOUR: 1}
CHUNK = 4096
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone: pass UTC-aware datetimes")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1000


def from_ns(nanoseconds: int) -> datetime:
    return datetime.fromtimestamp(nanoseconds / NS_PER_SECOND, UTC)


class Instrument:
    """One tradable (symbol, asset type) of the run: its security, latest close, working orders
    and position. Several subscriptions (frequencies) may share one instrument."""

    __slots__ = (
        "symbol", "asset_type", "security", "multiplier", "is_future", "sessions", "last_close", "mark_close",
        "mark_units", "mark_price", "orders", "position", "fill_subscription", "values_whole_units",
    )

    def __init__(self, security: SecurityInfo):
        self.symbol = security.symbol
        self.asset_type = AssetType(security.asset_type)
        self.security = security
        self.multiplier = security.multiplier or ONE
        self.is_future = self.asset_type is AssetType.FUTURE
        # A whole quantity of it is valued as quantity × price (Position.units).
        self.values_whole_units = not self.is_future and self.multiplier == 1
        self.sessions: Sessions | None = None
        self.last_close: float | None = None  # latest close seen, float (set per bar)
        self.mark_close: float | None = None  # the close `mark_units` was made from
        self.mark_units = 0  # mark_close in units of 1e-8
        self.mark_price = None  # the same as Decimal, made only when asked for
        self.orders: list = []  # working orders, in the order they were placed
        self.position = None
        self.fill_subscription = None  # the finest subscription: orders are evaluated on its bars

    @property
    def key(self) -> tuple[str, AssetType]:
        return (self.symbol, self.asset_type)


class Subscription:
    __slots__ = ("index", "instrument", "frequency", "rank", "bars", "bar_open_ns", "close_ns")

    def __init__(self, index: int, instrument: Instrument, frequency: BarFrequency):
        self.index = index
        self.instrument = instrument
        self.frequency = frequency
        self.rank = FREQUENCY_RANK[frequency]
        self.bars: BarArrays | None = None
        self.bar_open_ns: np.ndarray | None = None  # when trading in the bar starts (daily: the session open)
        self.close_ns: np.ndarray | None = None  # when the bar is emitted

    @property
    def label(self) -> str:
        return f"{self.instrument.symbol} ({self.instrument.asset_type}) {self.frequency} bars"


def clean_bars(bars: BarArrays, start_ns: int, end_ns: int) -> BarArrays:
    """Bars with start <= time < end, finite positive prices, ascending unique times (a bar
    failing that is treated as missing: nothing could be filled at its prices)."""
    times = np.asarray(bars.times, dtype=np.int64)
    columns = [np.asarray(column, dtype=np.float64) for column in (bars.open, bars.high, bars.low, bars.close, bars.volume)]
    keep = (times >= start_ns) & (times < end_ns)
    for column in columns[:4]:
        keep &= np.isfinite(column) & (column > 0)
    if not keep.all():
        times = times[keep]
        columns = [column[keep] for column in columns]
    if len(times) > 1 and not (np.diff(times) > 0).all():
        order = np.argsort(times, kind="stable")
        times = times[order]
        columns = [column[order] for column in columns]
        unique = np.concatenate(([True], np.diff(times) > 0))
        times = times[unique]
        columns = [column[unique] for column in columns]
    volume = np.nan_to_num(columns[4], nan=0.0)
    return BarArrays(times, columns[0], columns[1], columns[2], columns[3], volume)


def place_on_sessions(subscription: Subscription, sessions: Sessions) -> None:
    """Work out each bar's trading-start and emit times from the session calendar."""
    times = subscription.bars.times
    session = np.searchsorted(sessions.closes, times, side="right")
    known = session < len(sessions)
    clipped = np.minimum(session, len(sessions) - 1)
    if subscription.frequency is BarFrequency.DAY:
        # A daily bar is a whole session: it trades from the open and is emitted at the close.
        subscription.bar_open_ns = np.where(known, np.maximum(sessions.opens[clipped], times), times)
        subscription.close_ns = np.where(known, sessions.closes[clipped], times + 86_400 * NS_PER_SECOND)
    else:
        length = subscription.frequency.seconds * NS_PER_SECOND
        in_session = known & (sessions.opens[clipped] <= times)
        subscription.bar_open_ns = times
        subscription.close_ns = np.where(in_session, np.minimum(times + length, sessions.closes[clipped]), times + length)


@dataclass(frozen=True)
class DataGap:
    at_ns: int  # bars: the open of the last bar before the gap; sessions: the open of the first missing one
    missing: int
    sessions: bool  # whole sessions missing (else bars inside a session)


def find_gaps(subscription: Subscription, sessions: Sessions) -> list[DataGap]:
    """Holes in the data: whole sessions without a bar between the first and last bar, and, for
    intraday bars, runs of missing bars inside a session."""
    times = subscription.bars.times
    if len(times) == 0:
        return []
    gaps: list[DataGap] = []
    session = np.searchsorted(sessions.closes, times, side="right")
    inside = (session < len(sessions)) & (sessions.opens[np.minimum(session, len(sessions) - 1)] <= times)
    if subscription.frequency is not BarFrequency.DAY:
        inside_times, inside_sessions = times[inside], session[inside]
        step = subscription.frequency.seconds * NS_PER_SECOND
        same_session = inside_sessions[1:] == inside_sessions[:-1]
        missing = (np.diff(inside_times) // step) - 1
        for index in np.flatnonzero(same_session & (missing > GAP_MISSING_BARS[subscription.frequency])):
            gaps.append(DataGap(at_ns=int(inside_times[index]), missing=int(missing[index]), sessions=False))
    else:
        inside = session < len(sessions)
    traded = np.unique(session[inside])
    if len(traded):
        expected = np.arange(traded[0], traded[-1] + 1)
        absent = np.setdiff1d(expected, traded, assume_unique=True)
        if len(absent):
            # Consecutive missing sessions are one gap.
            breaks = np.flatnonzero(np.diff(absent) != 1) + 1
            for run in np.split(absent, breaks):
                gaps.append(DataGap(at_ns=int(sessions.opens[run[0]]), missing=len(run), sessions=True))
    gaps.sort(key=lambda gap: gap.at_ns)
    return gaps


class MergedFeed:
    """Every bar of every subscription, in emit order, served in chunks of plain Python lists
    (list indexing and float maths are much cheaper than numpy scalars in a per-bar loop)."""

    def __init__(self, subscriptions: list[Subscription]):
        active = [s for s in subscriptions if s.bars is not None and len(s.bars)]
        self.length = sum(len(s.bars) for s in active)
        if len(active) == 1:
            only = active[0]
            self.subscription_index = None
            self.single_index = only.index
            self.emit_ns = only.close_ns
            self.bar_open_ns = only.bar_open_ns
            self.time_ns = only.bars.times
            self.open, self.high, self.low, self.close, self.volume = (
                only.bars.open, only.bars.high, only.bars.low, only.bars.close, only.bars.volume
            )
        else:
            emit = np.concatenate([s.close_ns for s in active]) if active else np.empty(0, dtype=np.int64)
            tie = np.concatenate([np.full(len(s.bars), s.rank * 1_000_000 + s.index, dtype=np.int64) for s in active]) if active else np.empty(0, dtype=np.int64)
            order = np.lexsort((tie, emit))  # stable: a subscription's own bars keep their order

            def gather(pick):
                return np.concatenate([pick(s) for s in active])[order] if active else np.empty(0)

            self.single_index = None
            self.subscription_index = gather(lambda s: np.full(len(s.bars), s.index, dtype=np.int64))
            self.emit_ns = emit[order]
            self.bar_open_ns = gather(lambda s: s.bar_open_ns)
            self.time_ns = gather(lambda s: s.bars.times)
            self.open = gather(lambda s: s.bars.open)
            self.high = gather(lambda s: s.bars.high)
            self.low = gather(lambda s: s.bars.low)
            self.close = gather(lambda s: s.bars.close)
            self.volume = gather(lambda s: s.bars.volume)
        # True where the next event has a later emit time: the end of a group of bars closing together.
        self.group_end = np.ones(self.length, dtype=bool)
        if self.length > 1:
            self.group_end[:-1] = self.emit_ns[1:] != self.emit_ns[:-1]

    def __len__(self) -> int:
        return self.length

    def chunks(self, first: int = 0):
        """Yield (first index, lists...) from `first` on: emit ns, subscription index, bar open
        ns, open, high, low, close, volume, group end. (Bar times stay ints: BarEvent makes its
        datetime only when a strategy reads it.)"""
        for begin in range(first, self.length, CHUNK):
            end = min(begin + CHUNK, self.length)
            if self.subscription_index is None:
                subscriptions = [self.single_index] * (end - begin)
            else:
                subscriptions = self.subscription_index[begin:end].tolist()
            yield (
                begin,
                self.emit_ns[begin:end].tolist(),
                subscriptions,
                self.time_ns[begin:end].tolist(),
                self.open[begin:end].tolist(),
                self.high[begin:end].tolist(),
                self.low[begin:end].tolist(),
                self.close[begin:end].tolist(),
                self.volume[begin:end].tolist(),
                self.group_end[begin:end].tolist(),
            )
