"""The real-time loop on a fake clock (the replay feed and the loop share it): bars at their
wall times, next-bar fills, timers on the market clock, flushes, stop, handler limit, errors."""

from datetime import date, timedelta

import pytest

from runs.engine import CoreSettings
from runs.engine.broker import SimulatedBroker
from runs.engine.feed import from_ns
from runs.engine.realtime import run_realtime
from runs.engine.replay import ReplayFeed
from strategies.sdk.actions import PlaceOrder, ScheduleTimer, Subscribe
from strategies.sdk.enums import AssetType, BarFrequency, Intent, OrderState
from tests.engine.factories import (
    PREFIX,
    ListRecorder,
    MemoryMarketData,
    Scripted,
    SecurityInfoFactory,
    compile_strategy,
    price_bars,
    session_times,
    utc,
)
from tests.engine.test_replay import FakeClock, last_bar_time_of

MSFT = SecurityInfoFactory(symbol="MSFT")
MINUTES = session_times(date(2017, 3, 1), date(2017, 3, 1))[:30]
ROWS = [(100.0 + i, 100.5 + i, 99.5 + i, 100.2 + i) for i in range(30)]


def realtime(strategy_class=Scripted, *, config=None, core=None, speed=60.0, should_stop=None, clock=None, rows=ROWS, **options):
    config = {} if config is None else config
    clock = clock or FakeClock()
    market_data = MemoryMarketData([MSFT], {("MSFT", "equity", "minute"): price_bars(MINUTES, rows)})
    feed = ReplayFeed(
        market_data=market_data, last_bar_time=last_bar_time_of(market_data), start=from_ns(int(MINUTES[0])),
        speed=speed, clock=clock, sleep=clock.sleep,
    )
    recorder = ListRecorder()
    result = run_realtime(
        strategy_class=strategy_class,
        strategy_config=config,
        core=CoreSettings.from_config(core or {}),
        feed=feed,
        market_data=market_data,
        recorder=recorder,
        should_stop=should_stop or (lambda: False),
        clock=clock,
        strategy_file_prefix=PREFIX,
        **options,
    )
    instances = config.get("instances") or [None]
    return result, recorder, instances[-1], clock


SUBSCRIBE = [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)]


def test_bars_reach_on_bar_at_their_close_on_the_market_clock_and_the_run_completes_with_the_data():
    seen_at = []
    clock = FakeClock()
    config = {"subscribe": SUBSCRIBE, "script": {i: (lambda strategy: seen_at.append(clock.now)) for i in range(30)}}
    result, recorder, strategy, _ = realtime(config=config, clock=clock, speed=60)
    assert result.status == "complete"
    assert result.bars_processed == 30
    assert [event.time for event, _ in strategy.bars] == [from_ns(int(t)) for t in MINUTES]
    assert [now for _, now in strategy.bars] == [from_ns(int(t) + 60 * 10**9) for t in MINUTES]  # ctx.now = the close
    # A market minute is a wall second at 60x: bar k is handled k+1 seconds after the start.
    assert [round(at - seen_at[0], 6) for at in seen_at] == [float(k) for k in range(30)]
    assert len(result.equity_times) == 31  # the start, then one per bar
    assert recorder.batches[-1].final and recorder.batches[-1].progress == 0


def test_a_market_order_placed_on_bar_t_fills_at_the_open_of_bar_t_plus_1():
    config = {"subscribe": SUBSCRIBE, "script": {3: [PlaceOrder("MSFT", Intent.BUY, quantity=10)]}}
    result, recorder, strategy, _ = realtime(config=config)
    assert len(result.fills) == 1
    fill = result.fills[0]
    assert fill.price == pytest.approx(ROWS[4][0])
    assert fill.time == from_ns(int(MINUTES[4]))
    filled = [u for u in strategy.updates if u.state is OrderState.FILLED]
    assert len(filled) == 1 and filled[0].last_fill_quantity == 10
    positions = recorder.all("positions")
    assert positions and positions[-1].quantity == 10


def test_timers_fire_on_the_market_clock_between_bars():
    config = {"subscribe": SUBSCRIBE, "on_start": [ScheduleTimer("tick", every=timedelta(seconds=150))]}
    result, _, strategy, _ = realtime(config=config)
    assert result.status == "complete"
    start = from_ns(int(MINUTES[0]))
    fired = [event.time for event, _ in strategy.timers]
    assert fired[:3] == [start + timedelta(seconds=150 * k) for k in (1, 2, 3)]
    assert [now for _, now in strategy.timers] == fired
    # Interleaved in time with the bars: the timer at 2.5 min came after the bar closing at 2 min, before 3 min.
    bar_times = [now for _, now in strategy.bars]
    assert bar_times[1] < fired[0] < bar_times[2]


def test_batches_are_recorded_every_flush_interval_while_running():
    result, recorder, _, _ = realtime(config={"subscribe": SUBSCRIBE}, speed=60, flush_interval_seconds=2.0)
    # 30 wall seconds of bars: a batch about every 2 s, and the final one.
    assert 13 <= len(recorder.batches) <= 17
    assert sum(len(batch.equity) for batch in recorder.batches) == 31
    assert all(batch.progress == 0 for batch in recorder.batches)


def test_a_stop_is_honoured_within_a_second_of_the_request():
    clock = FakeClock()
    stop_at = clock.now + 7.3
    polled_true_at = []

    def should_stop():
        if clock.now >= stop_at:
            polled_true_at.append(clock.now)
            return True
        return False

    result, _, strategy, _ = realtime(config={"subscribe": SUBSCRIBE}, clock=clock, should_stop=should_stop)
    assert result.status == "stopped"
    assert polled_true_at and polled_true_at[0] - stop_at <= 1.0
    assert 5 <= result.bars_processed <= 9
    assert strategy.stopped_at is not None


def test_a_handler_over_the_time_limit_ends_the_run_with_handler_timeout():
    source = """
import time
from strategies.sdk import AssetType, BarFrequency, StrategyBase, Subscribe


class Strategy(StrategyBase):
    def on_start(self, now):
        return [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)]

    def on_bar(self, event):
        time.sleep(5)
"""
    import time as wallclock

    started = wallclock.monotonic()
    result, recorder, _, _ = realtime(compile_strategy(source), core={"handler_timeout_seconds": 0.2})
    assert wallclock.monotonic() - started < 2
    assert result.status == "error"
    _, issue = recorder.issues()["handler_timeout"]
    assert issue.message.startswith("on_bar ran longer than 0.2 s (core.handler_timeout_seconds)")


def test_an_exception_in_a_handler_is_a_strategy_exception_and_the_run_errors():
    source = """
from strategies.sdk import AssetType, BarFrequency, StrategyBase, Subscribe


class Strategy(StrategyBase):
    def on_start(self, now):
        return [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)]

    def on_bar(self, event):
        if event.close > 105:
            raise ValueError("too high")
"""
    result, recorder, _, _ = realtime(compile_strategy(source))
    assert result.status == "error"
    assert result.bars_processed == 5
    _, issue = recorder.issues()["strategy_exception"]
    assert "ValueError: too high" in issue.message
    assert "strategy.py" in issue.detail


def test_on_start_without_subscriptions_is_a_fatal_data_issue():
    result, recorder, _, _ = realtime(config={})
    assert result.status == "error"
    _, issue = recorder.issues()["data_missing"]
    assert issue.severity == "error" and "on_start subscribed to nothing" in issue.message


def test_an_end_on_the_market_clock_completes_the_run_there():
    end = from_ns(int(MINUTES[10]) + 30 * 10**9)
    result, _, strategy, _ = realtime(config={"subscribe": SUBSCRIBE}, end=end)
    assert result.status == "complete"
    assert result.bars_processed == 10  # bars closing by 14:40:30
    assert strategy.stopped_at == end


def test_another_broker_can_be_injected():
    made = []

    def factory(kernel):
        broker = SimulatedBroker(core=kernel.core, portfolio=kernel.portfolio, client_order_prefix="x", end_ns=kernel.end_ns, listener=kernel)
        made.append(broker)
        return broker

    config = {"subscribe": SUBSCRIBE, "script": {0: [PlaceOrder("MSFT", Intent.BUY, quantity=1)]}}
    result, _, _, _ = realtime(config=config, broker_factory=factory)
    assert len(made) == 1
    assert result.fills[0].execution_id.startswith("x-1")


def test_a_started_replay_runs_on_the_start_time_given():
    result, _, strategy, _ = realtime(config={"subscribe": SUBSCRIBE})
    assert strategy.started_at == utc(2017, 3, 1, 14, 30)
