"""Real time: the kernel on the wall clock, bars from a feed as they complete (Paper mode).

The same kernel as a backtest (dispatch.py) with a different driver: instead of replaying an
array of stored bars as fast as possible, the loop waits on a `RealtimeFeed` for the next
completed bar, the next timer or the next housekeeping moment, whichever comes first:

- bars are dispatched exactly as in a backtest: timers and DAY-order expiries due before a
  bar's close run first; the instrument's working orders are evaluated on the bar of its finest
  subscription (simulated fills: an order placed on bar t fills on bar t+1, product.md §6);
  then on_bar; an equity point per completed bar (group of bars closing together);
- timers fire on the feed's market clock (the replay clock, or the wall clock for a vendor feed);
- a batch is recorded every `flush_interval_seconds` (the run's heartbeat: portfolio,
  positions, orders current for the console's ten-second refresh);
- `should_stop` is polled about every `stop_poll_seconds`, and a wait never outlasts it;
- the handler time limit (core.handler_timeout_seconds) applies to every handler;
- the run ends when stopped, at `end` (market clock), or when the feed has no more bars
  (a replay that ran out of stored data).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from runs.engine import diagnostics
from runs.engine.backtest import EngineResult, run_session
from runs.engine.core_settings import CoreSettings
from runs.engine.dispatch import Kernel, RunEnded, StopRequested
from runs.engine.feed import Subscription, from_ns
from runs.engine.records import MarketData, Recorder
from runs.engine.sessions import NS_PER_SECOND, Sessions
from strategies.sdk.enums import BarFrequency
from strategies.sdk.events import BarEvent

# A run without an end runs until killed; the kernel still needs a horizon for its calendars.
DEFAULT_HORIZON = timedelta(days=366)


# -- the feed interface -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FeedBar:
    """One completed bar of a subscription."""

    subscription: int  # the Subscription.index it belongs to (as passed to RealtimeFeed.subscribe)
    time_ns: int  # the bar's open time, ns UTC (as stored / as the vendor stamps it)
    trading_from_ns: int  # when trading in it starts: time_ns, or a daily bar's session open
    close_ns: int  # when it completed, on the market clock: the handler's ctx.now
    open: float
    high: float
    low: float
    close: float
    volume: float


class RealtimeFeed(Protocol):
    """Where a real-time run gets its bars (runs.engine.replay.ReplayFeed plays stored bars;
    a vendor adapter streams live ones). The market clock is the feed's: the replay's scaled
    clock, or the wall clock for a live vendor."""

    def subscribe(self, subscriptions: Sequence[Subscription]) -> dict[int, str]:
        """Start delivering bars for these subscriptions (each has .index, .frequency and
        .instrument with .symbol, .asset_type and .sessions). Returns the ones the feed cannot
        serve, as {subscription index: reason for the operator}; the others are served."""

    def now_ns(self) -> int:
        """The market time (ns UTC) up to which every completed bar has been returned by
        next_bars. Before subscribe: the time the run starts at."""

    def seconds_until(self, market_ns: int) -> float:
        """Wall-clock seconds until the market clock reaches `market_ns` (0 if it has)."""

    def next_bars(self, timeout_seconds: float) -> list[FeedBar]:
        """Bars completed since the last call, ordered by close time (ties: finer frequency
        first, then subscription index); waits up to `timeout_seconds` for one and returns []
        if none completed by then."""

    @property
    def finished(self) -> bool:
        """True when no bar will ever come again (a replay past its stored data)."""

    def close(self) -> None:
        """Release connections and threads; called once when the run ends."""


def bar_times(subscription: Subscription, time_ns: int) -> tuple[int, int]:
    """(trading_from_ns, close_ns) of one bar opening at `time_ns`, on the subscription's
    session calendar, by the rules of feed.place_on_sessions (for feeds that get bars one at a
    time): an intraday bar closes one period later (cut at the session close), a daily bar
    trades from its session's open to its close."""
    sessions: Sessions = subscription.instrument.sessions
    session = sessions.working_session(time_ns)
    known = session < len(sessions)
    if subscription.frequency is BarFrequency.DAY:
        if not known:
            return time_ns, time_ns + 86_400 * NS_PER_SECOND
        return max(sessions.open_list[session], time_ns), sessions.close_list[session]
    length = subscription.frequency.seconds * NS_PER_SECOND
    if known and sessions.open_list[session] <= time_ns:
        return time_ns, min(time_ns + length, sessions.close_list[session])
    return time_ns, time_ns + length


# -- the loop -----------------------------------------------------------------------------------
def run_realtime(
    *,
    strategy_class: type,
    strategy_config: dict,
    core: CoreSettings,
    feed: RealtimeFeed,
    market_data: MarketData,
    recorder: Recorder,
    should_stop: Callable[[], bool],
    clock: Callable[[], float] = time.monotonic,
    end: datetime | None = None,
    strategy_file_prefix: str = "",
    flush_interval_seconds: float = 2.0,
    stop_poll_seconds: float = 1.0,
    log_max_lines: int = 5000,
    calendar: str | None = None,
    client_order_prefix: str = "rt",
    broker_factory=None,
) -> EngineResult:
    """Run `strategy_class` on `feed` until `should_stop()`, `end` or the feed's last bar.

    `clock` measures wall seconds for flushes and stop polls (the feed keeps its own clock for
    waiting). `broker_factory(kernel)` replaces the simulated broker (see Kernel). A real
    account's broker may also have these, called when present: `prepare(now)` after the starting
    deposit and before on_start; `poll(now)` after each wait, its order updates then delivered;
    `stop(now)` at the end, instead of cancelling the working orders locally."""
    start = from_ns(feed.now_ns())
    if end is not None and end <= start:
        raise ValueError(f"end {end.isoformat()} must be after the start {start.isoformat()}")
    kernel = Kernel(
        core=core,
        market_data=market_data,
        recorder=recorder,
        start=start,
        end=end if end is not None else start + DEFAULT_HORIZON,
        should_stop=should_stop,
        file_prefix=strategy_file_prefix,
        flush_interval_seconds=flush_interval_seconds,
        log_max_lines=log_max_lines,
        calendar=calendar,
        client_order_prefix=client_order_prefix,
        broker_factory=broker_factory,
    )
    def play() -> None:
        kernel.portfolio.deposit(core.starting_cash, time=start, description="starting cash")
        if hasattr(kernel.broker, "prepare"):  # a real account's broker reconciles before the strategy may trade
            kernel.broker.prepare(kernel.ctx.now)
        kernel.start_strategy(strategy_class, strategy_config)
        _subscribe(kernel, feed)
        kernel.record_equity(kernel.start_ns)
        _loop(kernel, feed, clock, stop_poll_seconds)

    try:
        return run_session(kernel, play, clock_name="market clock", final_progress=lambda status: 0)
    finally:
        feed.close()


def _subscribe(kernel: Kernel, feed: RealtimeFeed) -> None:
    kernel.require_subscriptions()
    unserved = feed.subscribe(kernel.subscriptions)
    for index, reason in unserved.items():
        kernel.issues.report(diagnostics.DATA_MISSING, key=kernel.subscriptions[index].label, message=reason)
    served = [s for s in kernel.subscriptions if s.index not in unserved]
    if not served:
        kernel.issues.report(
            diagnostics.DATA_MISSING_FATAL,
            key="no-data",
            message="The feed has no bars for any subscription, so the run cannot proceed: see the data_missing issues",
        )
        raise RunEnded("no bars for any subscription")
    for subscription in sorted(served, key=lambda s: (s.rank, s.index), reverse=True):
        subscription.instrument.fill_subscription = subscription  # the finest one wins


def _loop(kernel: Kernel, feed: RealtimeFeed, clock, stop_poll_seconds: float) -> None:
    flush_interval = kernel.flush_interval
    end_ns = kernel.end_ns
    broker = kernel.broker
    poll = getattr(broker, "poll", None)
    last_flush = clock()
    last_poll = float("-inf")  # the first pass polls: a kill requested before the start stops at once
    while True:
        now = clock()
        if now - last_poll >= stop_poll_seconds:
            last_poll = now
            kernel.note_slow_handler()
            if kernel._stop_requested():
                raise StopRequested
        if now - last_flush >= flush_interval:
            kernel.flush(progress=0)
            last_flush = clock()
        if kernel.ctx.now_ns >= end_ns:
            kernel.run_out()
            return
        if feed.finished:
            return
        due_ns = min(kernel.next_timer_ns, broker.next_expiry_ns, end_ns)
        now = clock()
        wait = min(stop_poll_seconds - (now - last_poll), flush_interval - (now - last_flush), feed.seconds_until(due_ns))
        bars = feed.next_bars(max(0.0, wait))
        if poll is not None:  # a real account's broker: fills and order updates arrive between bars
            poll(from_ns(max(feed.now_ns(), kernel.ctx.now_ns)))
            kernel.dispatch_updates()
        if bars:
            _deliver(kernel, bars)
        market_now = min(feed.now_ns(), end_ns)
        if market_now > kernel.ctx.now_ns:
            if min(kernel.next_timer_ns, broker.next_expiry_ns) <= market_now:
                # Due by now, inclusive; a timer at `end` itself does not fire (as in a backtest).
                kernel.advance(market_now + 1 if market_now < end_ns else end_ns)
            kernel.ctx.now_ns = market_now


def _deliver(kernel: Kernel, bars: list[FeedBar]) -> None:
    """The backtest's per-bar steps (backtest._replay), one bar at a time."""
    subscriptions = kernel.subscriptions
    broker = kernel.broker
    ctx = kernel.ctx
    last = len(bars) - 1
    for position, bar in enumerate(bars):
        emit = max(bar.close_ns, ctx.now_ns)  # a late bar from a live feed never turns the clock back
        if emit > kernel.next_timer_ns or emit > broker.next_expiry_ns:
            kernel.advance(emit)
        subscription = subscriptions[bar.subscription]
        instrument = subscription.instrument
        instrument.last_close = bar.close
        ctx.now_ns = emit
        was_armed = kernel._arm()
        try:
            if instrument.orders and subscription is instrument.fill_subscription:
                kernel.fill_bar(instrument, bar.trading_from_ns, emit, bar.open, bar.high, bar.low, bar.volume)
            # From its fields: the event keeps the open time in nanoseconds (BarEvent.time_ns).
            kernel.dispatch("on_bar", BarEvent._make((
                instrument.symbol, instrument.asset_type, subscription.frequency, bar.time_ns,
                bar.open, bar.high, bar.low, bar.close, bar.volume,
            )))
        finally:
            kernel._restore(was_armed)
        kernel.bars_processed += 1
        if position == last or max(bars[position + 1].close_ns, emit) != emit:  # the last bar closing at `emit`
            if kernel.next_timer_ns <= emit:
                kernel.fire_timers(emit, inclusive=True)
            times = kernel.equity_times
            if not times or times[-1] < emit:
                kernel.record_equity(emit)
