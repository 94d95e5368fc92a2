"""Backtest: replay stored bars through the kernel as fast as possible.

The per-bar loop (`_replay`) is the hot path: plain lists per chunk, one tuple per BarEvent (its
time left in nanoseconds), no valuation per bar (the portfolio's state is noted when it changes
and the equity curve computed per batch, runs.engine.equity), the wall clock looked at only
every few thousand bars.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import numpy as np

from portfolio.metrics import RoundTrip, round_trips_from_fills
from runs.engine import diagnostics
from runs.engine.context import PrintCapture
from runs.engine.core_settings import CoreSettings
from runs.engine.dispatch import Kernel, RunEnded, StopRequested
from runs.engine.equity import ReplayEquity
from runs.engine.feed import MergedFeed, clean_bars, find_gaps, from_ns, place_on_sessions
from runs.engine.records import FillRecord, MarketData, Recorder
from runs.engine.watchdog import HandlerTimeout, HandlerWatchdog
from strategies.sdk.events import BarEvent

# Check after the first bar: a slow strategy must show progress and honour a Kill from the
# start; wall_check then grows the interval (at most doubling) while bars stay fast.
FIRST_CHECK = 1


@dataclass
class EngineResult:
    status: str  # "complete" | "stopped" | "error"
    bars_processed: int
    cash: Decimal
    portfolio_value: Decimal
    error_message: str | None
    equity_times: np.ndarray  # int64 ns, UTC
    equity_values: np.ndarray  # float64
    fills: list[FillRecord]
    multipliers: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # (symbol, asset type) -> contract multiplier
    exposure_fraction: float | None = None  # share of the run's time with an open position

    @property
    def round_trips(self) -> list[RoundTrip]:
        """Closed trades (entry/exit time, quantity, prices, pnl net of commission), FIFO."""
        return round_trips_from_fills(self.fills, multipliers=self.multipliers)


def run_backtest(
    *,
    strategy_class: type,
    strategy_config: dict,
    core: CoreSettings,
    market_data: MarketData,
    start: datetime,
    end: datetime,
    recorder: Recorder,
    should_stop=lambda: False,
    strategy_file_prefix: str = "",
    flush_interval_seconds: float = 1.0,
    log_max_lines: int = 5000,
    calendar: str | None = None,
    client_order_prefix: str = "bt",
) -> EngineResult:
    """Run `strategy_class` over the bars with start <= time < end.

    `calendar` names the exchange_calendars calendar for every instrument; None uses XNYS for
    equities and CMES for futures. The recorder gets a batch about every
    `flush_interval_seconds` and a final one; `should_stop` is polled about once a second.
    """
    kernel = Kernel(
        core=core,
        market_data=market_data,
        recorder=recorder,
        start=start,
        end=end,
        should_stop=should_stop,
        file_prefix=strategy_file_prefix,
        flush_interval_seconds=flush_interval_seconds,
        log_max_lines=log_max_lines,
        calendar=calendar,
        client_order_prefix=client_order_prefix,
    )
    if kernel.start_ns >= kernel.end_ns:
        raise ValueError(f"start {start.isoformat()} must be before end {end.isoformat()}")

    def replay() -> None:
        kernel.portfolio.deposit(core.starting_cash, time=start, description="starting cash")
        kernel.start_strategy(strategy_class, strategy_config)
        feed = _load_bars(kernel)
        kernel.record_equity(kernel.start_ns)
        _replay(kernel, feed)
        kernel.run_out()

    with _collect_garbage_per_batch(kernel):
        return run_session(
            kernel, replay, clock_name="simulated", final_progress=lambda status: 100 if status == "complete" else None
        )


def run_session(kernel: Kernel, body, *, clock_name: str, final_progress) -> EngineResult:
    """What every mode does around its driver `body()`: print capture and the handler watchdog;
    a stop, a fatal issue, a timeout or an engine failure turned into the run's status; on_stop;
    orders still working closed (a real account's broker, having `stop(now)`, cancels them there
    and lists the positions left); the final batch with `final_progress(status)`."""
    core = kernel.core
    status, message = "complete", None
    capture = PrintCapture(kernel.log_sink, core.log_level)
    watchdog = kernel.watchdog = HandlerWatchdog(timeout_seconds=core.handler_timeout_seconds, progress=kernel.progress_marker)
    watchdog.start()
    try:
        with contextlib.redirect_stdout(capture):
            try:
                body()
            except StopRequested:
                status = "stopped"
            except RunEnded as ended:
                status, message = "error", str(ended)
            except HandlerTimeout:
                # Fired while engine code (not a handler) was on the stack: the handler it
                # measured has just returned; report it the same way.
                watchdog.disarm()
                status, message = "error", "a handler timed out"
                kernel.issues.report(
                    diagnostics.HANDLER_TIMEOUT,
                    key="engine",
                    message=(
                        f"the strategy's handlers ran longer than {core.handler_timeout_seconds:g} s "
                        "(core.handler_timeout_seconds) at one moment: make them faster, or raise the limit"
                    ),
                    detail=f"at {kernel.ctx.now:%Y-%m-%d %H:%M:%S} UTC ({clock_name})",
                )
            except Exception as exc:
                watchdog.disarm()
                status, message = "error", f"internal error: {type(exc).__name__}: {exc}"
                _report_internal_error(kernel, exc)
            if status != "error" and kernel.strategy is not None:
                try:
                    kernel.stop_strategy(kernel.ctx.now_ns)
                except RunEnded as ended:
                    status, message = "error", str(ended)
            capture.finish()
            kernel.note_slow_handler()
            kernel.phase = "stop"
            if hasattr(kernel.broker, "stop"):
                kernel.broker.stop(kernel.ctx.now)
            else:
                kernel.close_remaining_orders("the run ended" if status != "error" else "the run ended in error")
            kernel.flush(final=True, progress=final_progress(status))
    finally:
        watchdog.stop()
    return EngineResult(
        status=status,
        bars_processed=kernel.bars_processed,
        cash=kernel.portfolio.cash,
        portfolio_value=kernel.portfolio.value(),
        error_message=message,
        equity_times=np.frombuffer(kernel.equity_times, dtype=np.int64).copy(),
        equity_values=np.frombuffer(kernel.equity_values, dtype=np.float64).copy(),
        fills=kernel.broker.fills,
        multipliers={(i.symbol, str(i.asset_type)): i.multiplier for i in kernel.instruments.values()},
        exposure_fraction=_exposure(kernel),
    )


@contextlib.contextmanager
def _collect_garbage_per_batch(kernel: Kernel):
    """Python's automatic collector walks every tracked object of the process on its full
    passes, which costs more than the engine itself on a long replay. Instead: no automatic
    passes during the run; after a batch, a young-generation pass once enough new objects
    piled up (cyclic garbage made since the last one) and a full pass every
    FULL_COLLECTION_EVERY batches. The previous setting is restored (gc is process-wide;
    another engine in a thread only gets slower)."""
    was_enabled = gc.isenabled()
    gc.disable()
    kernel.collects_garbage = True
    try:
        yield
    finally:
        kernel.collects_garbage = False
        if was_enabled:
            gc.enable()


def _exposure(kernel: Kernel) -> float | None:
    times = kernel.equity_times
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return kernel.exposed_ns / (times[-1] - times[0])


def _report_internal_error(kernel: Kernel, exc: Exception) -> None:
    import traceback

    kernel.issues.report(
        diagnostics.INTERNAL_ERROR,
        key=type(exc).__name__,
        message=f"The engine failed ({type(exc).__name__}: {str(exc)[:300]}): Reset and Start to retry; if it happens again, call support with the detail.",
        detail="".join(traceback.format_exception(exc)),
    )


def _load_bars(kernel: Kernel) -> MergedFeed:
    """Bars of every subscription; data_missing / data_gap issues before the first event."""
    kernel.require_subscriptions()
    window = f"{kernel.start:%Y-%m-%d %H:%M} and {kernel.end:%Y-%m-%d %H:%M} UTC"
    for subscription in kernel.subscriptions:
        instrument = subscription.instrument
        bars = kernel.market_data.bars(instrument.symbol, instrument.asset_type, subscription.frequency, kernel.start, kernel.end)
        subscription.bars = clean_bars(bars, kernel.start_ns, kernel.end_ns)
        if not len(subscription.bars):
            kernel.issues.report(
                diagnostics.DATA_MISSING,
                key=subscription.label,
                message=f"No {subscription.label} between {window}: pick dates with data, or import bars for {instrument.symbol}",
            )
            continue
        place_on_sessions(subscription, instrument.sessions)
        gaps = find_gaps(subscription, instrument.sessions)
        if gaps:
            kernel.issues.report(
                diagnostics.DATA_GAP,
                key=subscription.label,
                message=(
                    f"{subscription.label} have {len(gaps)} gap(s) on the {instrument.sessions.name} calendar (largest: "
                    f"{_describe_gap(max(gaps, key=lambda gap: gap.missing), subscription)}); fills and valuations across "
                    "a gap use the last price before it"
                ),
                detail="\n".join(_describe_gap(gap, subscription) for gap in gaps[:50])
                + (f"\n… and {len(gaps) - 50} more" if len(gaps) > 50 else ""),
            )
    with_data = [s for s in kernel.subscriptions if len(s.bars)]
    if not with_data:
        kernel.issues.report(
            diagnostics.DATA_MISSING_FATAL,
            key="no-data",
            message=f"None of the subscriptions has bars between {window}, so the run cannot proceed: pick dates with data",
        )
        raise RunEnded("no bars for any subscription")
    for subscription in sorted(with_data, key=lambda s: (s.rank, s.index), reverse=True):
        subscription.instrument.fill_subscription = subscription  # the finest one wins
    return MergedFeed(kernel.subscriptions)


def _describe_gap(gap, subscription) -> str:
    when = f"{from_ns(gap.at_ns):%Y-%m-%d %H:%M} UTC"
    if gap.sessions:
        return f"{gap.missing} session{'s' if gap.missing > 1 else ''} missing from {when}"
    return f"{gap.missing} {subscription.frequency} bars missing after {when}"


def _replay(kernel: Kernel, feed: MergedFeed) -> None:
    ctx = kernel.ctx
    broker = kernel.broker
    portfolio = kernel.portfolio
    subscriptions = kernel.subscriptions
    on_bar = kernel.strategy.on_bar
    apply = kernel.apply
    # The equity curve: the portfolio's state is noted at the group ends where it changed; the
    # points are computed from those states and the closes at each batch (kernel.settle_equity).
    equity = kernel.bulk_equity = ReplayEquity(feed, subscriptions, portfolio)
    equity.note(-1)
    note_equity = equity.note
    noted_revision = portfolio.revision
    bar_open_ns = feed.bar_open_ns
    new_event = tuple.__new__
    # What each bar's event and fills need of its subscription, unpacked in one step per bar
    # (subscriptions are all made in on_start, before the replay).
    described = [(s, s.instrument, s.instrument.symbol, s.instrument.asset_type, s.frequency) for s in subscriptions]
    countdown = last_check_at = FIRST_CHECK
    index = 0
    kernel.watchdog.arm()
    try:
        for index, emits, subs, times_ns, opens, highs, lows, closes, volumes, ends in feed.chunks():
            for emit, sub, time_ns, bar_open, bar_high, bar_low, bar_close, bar_volume, last in zip(
                emits, subs, times_ns, opens, highs, lows, closes, volumes, ends, strict=True
            ):
                if emit > kernel.next_timer_ns or emit > broker.next_expiry_ns:
                    kernel.advance(emit)
                subscription, instrument, symbol, asset_type, frequency = described[sub]
                instrument.last_close = bar_close
                ctx.now_ns = emit
                if instrument.orders and subscription is instrument.fill_subscription:
                    kernel.fill_bar(instrument, int(bar_open_ns[index]), emit, bar_open, bar_high, bar_low, bar_volume)
                try:
                    actions = on_bar(new_event(BarEvent, (
                        symbol, asset_type, frequency, time_ns, bar_open, bar_high, bar_low, bar_close, bar_volume,
                    )))
                except BaseException as exc:
                    kernel.handler_failed(exc, "on_bar")
                if actions:
                    apply(actions, "on_bar")
                    if kernel.updates:
                        kernel.drain_updates()
                if last:
                    if kernel.next_timer_ns <= emit:
                        kernel.fire_timers(emit, inclusive=True)
                    if portfolio.revision != noted_revision:
                        noted_revision = portfolio.revision
                        note_equity(index)
                index += 1
                countdown -= 1
                if not countdown:
                    countdown = last_check_at = kernel.wall_check(index, last_check_at)
    finally:
        kernel.watchdog.disarm()
        kernel.bars_processed = index
