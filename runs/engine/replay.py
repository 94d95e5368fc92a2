"""The replay feed: stored bars played on the wall clock at `speed` × real time (Paper mode's
demo and rehearsal feed; tests).

The market clock starts at `start` when the feed is subscribed and runs `speed` times faster
than `clock`; each bar is delivered once the clock has passed its close (its time on the
session calendar, as in a backtest), in time order across subscriptions. Nights and weekends
take their real (scaled) time. Bars are loaded from MarketData in windows of market time as
the clock reaches them, so a long replay never holds all of its history.

Deterministic given `clock` and `sleep` (plain functions: a test passes a fake clock whose
sleep moves it forward).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from runs.engine.feed import Subscription, clean_bars, from_ns, place_on_sessions, to_ns
from runs.engine.realtime import FeedBar
from runs.engine.records import MarketData
from runs.engine.sessions import NS_PER_SECOND, Sessions
from strategies.sdk.enums import AssetType, BarFrequency

DEFAULT_REPLAY_SESSIONS = 20  # with no replay_start: the last this many sessions of stored data
MIN_WINDOW = timedelta(days=7)
WINDOW_WALL_SECONDS = 120  # a load covers at least this much wall time of replay
MAX_WAIT_SECONDS = 3600.0  # seconds_until for "never"
# Sleeping less than this could leave the scaled clock short of a close by a rounding error.
MIN_SLEEP_SECONDS = 1e-6

LastBarTime = Callable[[str, AssetType, BarFrequency], datetime | None]


def default_replay_start(last_bar: datetime, sessions: Sessions, *, sessions_back: int = DEFAULT_REPLAY_SESSIONS) -> datetime:
    """The open of the session `sessions_back - 1` sessions before the one holding `last_bar`:
    a replay of the latest `sessions_back` sessions of data."""
    session = min(sessions.working_session(to_ns(last_bar)), len(sessions) - 1)
    return from_ns(sessions.open_list[max(0, session - (sessions_back - 1))])


class ReplayFeed:
    """A RealtimeFeed (runs.engine.realtime) over stored bars."""

    def __init__(
        self,
        *,
        market_data: MarketData,
        last_bar_time: LastBarTime,
        start: datetime,
        speed: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if speed <= 0:
            raise ValueError(f"speed is {speed}: it must be greater than 0 (1 = real time)")
        self.market_data = market_data
        self.last_bar_time = last_bar_time
        self.start_ns = to_ns(start)
        self.speed = float(speed)
        self.clock = clock
        self.sleep = sleep
        self.window_ns = max(int(MIN_WINDOW.total_seconds()), int(self.speed * WINDOW_WALL_SECONDS)) * NS_PER_SECOND
        self.subscriptions: list[Subscription] = []
        self.wall_start: float | None = None  # clock() when the replay began (at subscribe)
        self.watermark_ns = self.start_ns
        self.loaded_until_ns = self.start_ns  # bars opening before this are loaded
        self.data_end_ns = self.start_ns  # just past the last stored bar of any served subscription
        self.pending: list[tuple[int, int, int, int, FeedBar]] = []  # heap: (close ns, rank, index, sequence, bar)
        self.sequence = 0
        self.closed = False

    # -- RealtimeFeed ---------------------------------------------------------------------------
    def subscribe(self, subscriptions: Sequence[Subscription]) -> dict[int, str]:
        unserved = {}
        window = f"from {from_ns(self.start_ns):%Y-%m-%d %H:%M} UTC"
        for subscription in subscriptions:
            instrument = subscription.instrument
            last = self.last_bar_time(instrument.symbol, instrument.asset_type, subscription.frequency)
            if last is None or to_ns(last) < self.start_ns:
                unserved[subscription.index] = (
                    f"No stored {subscription.label} {window} to replay: import bars for {instrument.symbol}, "
                    "or set an earlier replay start"
                )
                continue
            self.subscriptions.append(subscription)
            # One microsecond past it: the finest step of a datetime (MarketData.bars takes those).
            self.data_end_ns = max(self.data_end_ns, to_ns(last) + 1000)
        self.wall_start = self.clock()
        return unserved

    def now_ns(self) -> int:
        return self.watermark_ns

    def seconds_until(self, market_ns: int) -> float:
        remaining = (market_ns - self._market_now()) / NS_PER_SECOND / self.speed
        return max(0.0, min(remaining, MAX_WAIT_SECONDS))

    def next_bars(self, timeout_seconds: float) -> list[FeedBar]:
        deadline = self.clock() + max(0.0, timeout_seconds)
        while True:
            market_now = self._market_now()
            self._load_through(market_now)
            due = []
            while self.pending and self.pending[0][0] <= market_now:
                due.append(heapq.heappop(self.pending)[-1])
            self._load_next()
            if due or self.finished:
                self.watermark_ns = max(self.watermark_ns, market_now)
                return due
            wait = deadline - self.clock()
            if self.pending:
                wait = min(wait, self.seconds_until(self.pending[0][0]))
            if wait <= 0:
                self.watermark_ns = max(self.watermark_ns, market_now)
                return []
            self.sleep(max(wait, MIN_SLEEP_SECONDS))

    @property
    def finished(self) -> bool:
        return not self.pending and self.loaded_until_ns >= self.data_end_ns

    def close(self) -> None:
        self.closed = True
        self.pending = []

    # -- loading --------------------------------------------------------------------------------
    def _market_now(self) -> int:
        if self.wall_start is None:
            return self.start_ns
        return self.start_ns + int((self.clock() - self.wall_start) * self.speed * NS_PER_SECOND)

    def _load_through(self, market_ns: int) -> None:
        """Every bar opening at or before `market_ns` (so every bar closed by then) is loaded."""
        while self.loaded_until_ns <= market_ns and self.loaded_until_ns < self.data_end_ns:
            self._load_window()

    def _load_next(self) -> None:
        """With nothing pending, load ahead until a bar is (or the data ends), so the wait for
        it can be known."""
        while not self.pending and self.loaded_until_ns < self.data_end_ns:
            self._load_window()

    def _load_window(self) -> None:
        low = self.loaded_until_ns
        high = min(low + self.window_ns, self.data_end_ns)
        for subscription in self.subscriptions:
            instrument = subscription.instrument
            stored = self.market_data.bars(instrument.symbol, instrument.asset_type, subscription.frequency, from_ns(low), from_ns(high))
            bars = clean_bars(stored, low, high)
            if not len(bars):
                continue
            scratch = Subscription(subscription.index, instrument, subscription.frequency)
            scratch.bars = bars
            place_on_sessions(scratch, instrument.sessions)
            columns = zip(
                bars.times.tolist(), scratch.bar_open_ns.tolist(), scratch.close_ns.tolist(), bars.open.tolist(),
                bars.high.tolist(), bars.low.tolist(), bars.close.tolist(), bars.volume.tolist(), strict=True,
            )
            for time_ns, trading_from, close_ns, open_, high_, low_, close, volume in columns:
                self.sequence += 1
                bar = FeedBar(subscription.index, time_ns, trading_from, close_ns, open_, high_, low_, close, volume)
                heapq.heappush(self.pending, (close_ns, subscription.rank, subscription.index, self.sequence, bar))
        self.loaded_until_ns = high
