"""The dispatch loop end to end: event order, timers, diagnostics, logs, batches, kill."""

import threading
import time as wallclock
from datetime import date, timedelta
from decimal import Decimal

import pytest

from strategies.sdk import (
    AssetType,
    BarFrequency,
    DepositCash,
    Intent,
    OrderType,
    PlaceOrder,
    ScheduleTimer,
    StrategyBase,
    Subscribe,
)
from tests.engine.factories import (
    PREFIX,
    SecurityInfoFactory,
    backtest,
    compile_strategy,
    price_bars,
    session_times,
    utc,
    walk_bars,
)

MSFT = SecurityInfoFactory.build(symbol="MSFT")
AAPL = SecurityInfoFactory.build(symbol="AAPL")
DAY_ONE = date(2020, 1, 2)  # an XNYS session: 14:30-21:00 UTC
MINUTES = session_times(DAY_ONE, DAY_ONE)
START, END = utc(2020, 1, 2), utc(2020, 1, 3)


def minute_bars(seed=1, times=MINUTES):
    return walk_bars(times, seed=seed)


def test_bars_arrive_at_their_close_finer_frequencies_first_then_in_subscription_order():
    hours = session_times(DAY_ONE, DAY_ONE, frequency_seconds=3600)
    days = session_times(DAY_ONE, DAY_ONE, daily=True)
    config = {"subscribe": [
        Subscribe("MSFT", AssetType.EQUITY, BarFrequency.DAY),
        Subscribe("MSFT", AssetType.EQUITY, BarFrequency.HOUR),
        Subscribe("AAPL", AssetType.EQUITY, BarFrequency.MINUTE),
        Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE),
    ]}
    bars = {
        ("MSFT", "equity", "minute"): minute_bars(1),
        ("AAPL", "equity", "minute"): minute_bars(2),
        ("MSFT", "equity", "hour"): walk_bars(hours),
        ("MSFT", "equity", "day"): walk_bars(days),
    }
    result, _, strategy = backtest(securities=[MSFT, AAPL], bars=bars, config=config, start=START, end=END)
    seen = [(event.symbol, str(event.frequency), now) for event, now in strategy.bars]
    assert result.bars_processed == len(seen) == 390 * 2 + 7 + 1
    assert seen[:2] == [("AAPL", "minute", utc(2020, 1, 2, 14, 31)), ("MSFT", "minute", utc(2020, 1, 2, 14, 31))]
    # The first hourly bar (14:30-15:30) closes after the minute bars that close with it.
    at_1530 = [(symbol, frequency) for symbol, frequency, now in seen if now == utc(2020, 1, 2, 15, 30)]
    assert at_1530 == [("AAPL", "minute"), ("MSFT", "minute"), ("MSFT", "hour")]
    # The last hourly bar opens at 20:30 and is cut at the 21:00 close, with the daily bar last.
    at_close = [(symbol, frequency) for symbol, frequency, now in seen if now == utc(2020, 1, 2, 21)]
    assert at_close == [("AAPL", "minute"), ("MSFT", "minute"), ("MSFT", "hour"), ("MSFT", "day")]
    assert [now for _, _, now in seen] == sorted(now for _, _, now in seen)
    first_minute = strategy.bars[0][0]
    assert (first_minute.time, first_minute.open) == (utc(2020, 1, 2, 14, 30), 100.0)


def test_orders_fill_on_the_finest_subscription_of_the_symbol_only():
    days = session_times(DAY_ONE, date(2020, 1, 3), daily=True)
    minutes = session_times(DAY_ONE, date(2020, 1, 3))
    config = {
        "subscribe": [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.DAY), Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)],
        "script": {0: [PlaceOrder("MSFT", Intent.BUY, quantity=1)]},
    }
    bars = {("MSFT", "equity", "minute"): minute_bars(times=minutes), ("MSFT", "equity", "day"): price_bars(days, [(500.0,) * 4] * 2)}
    result, _, _ = backtest(securities=[MSFT], bars=bars, config=config, start=START, end=utc(2020, 1, 4))
    [fill] = result.fills
    assert fill.time == utc(2020, 1, 2, 14, 31) and fill.price != Decimal(500)


def test_timers_fire_in_simulated_time_interleaved_with_bars():
    events = []
    config = {
        "subscribe": [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)],
        "on_start": [
            ScheduleTimer("hourly", every=timedelta(hours=1)),
            ScheduleTimer("once", at=utc(2020, 1, 2, 15, 0, 30)),
            ScheduleTimer("replaced", every=timedelta(minutes=1)),
            ScheduleTimer("replaced", at=utc(2020, 1, 2, 23)),
        ],
        "script": {i: (lambda s: events.append(("bar", s.ctx.now)) or None) for i in range(390)},
        "on_timer": lambda s, event: events.append((event.name, s.ctx.now)) or None,
    }
    _, _, strategy = backtest(securities=[MSFT], bars={("MSFT", "equity", "minute"): minute_bars()}, config=config, start=START, end=END)
    timers = [(event.name, event.time) for event, _ in strategy.timers]
    hourly = [utc(2020, 1, 2, hour) for hour in range(1, 24)]
    assert [t for name, t in timers if name == "hourly"] == hourly  # runs on after the last bar, until the end
    assert [t for name, t in timers if name == "once"] == [utc(2020, 1, 2, 15, 0, 30)]
    assert [t for name, t in timers if name == "replaced"] == [utc(2020, 1, 2, 23)]
    index = events.index(("once", utc(2020, 1, 2, 15, 0, 30)))
    # A timer due at a bar's close fires after the bar; one between two closes, between the bars.
    assert events[index - 2 : index + 2] == [
        ("bar", utc(2020, 1, 2, 15)), ("hourly", utc(2020, 1, 2, 15)), ("once", utc(2020, 1, 2, 15, 0, 30)), ("bar", utc(2020, 1, 2, 15, 1))
    ]


def test_ctx_reads_the_portfolio_orders_and_securities():
    seen = {}

    def look(strategy):
        ctx = strategy.ctx
        seen.update(
            cash=ctx.cash, value=ctx.portfolio_value, position=ctx.position("msft"), orders=ctx.open_orders("MSFT"),
            security=ctx.security("MSFT"), other=ctx.security("AAPL"), now=ctx.now,
        )

    config = {
        "subscribe": [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)],
        "script": {0: [PlaceOrder("MSFT", Intent.BUY, quantity=10)],
                   1: [PlaceOrder("MSFT", Intent.SELL, quantity=5, order_type=OrderType.LIMIT, limit_price=1000, tag="take profit")],
                   2: look},
    }
    bars = {("MSFT", "equity", "minute"): price_bars(MINUTES, [(10.0, 10.0, 10.0, 11.0), (11.0, 12.0, 11.0, 12.0), (12.0, 12.0, 12.0, 13.0)])}
    backtest(securities=[MSFT, AAPL], bars=bars, config=config, start=START, end=END)
    assert seen["cash"] == Decimal("99890")  # 10 bought at the second bar's open, 11
    assert seen["value"] == Decimal("100020")  # marked at the third bar's close, 13
    assert (seen["position"].quantity, seen["position"].last_price, seen["position"].unrealized_pnl) == (10, Decimal(13), Decimal(20))
    [working] = seen["orders"]
    assert (working.order_id, working.tag, working.limit_price, str(working.state)) == (2, "take profit", Decimal(1000), "working")
    assert seen["security"] == MSFT and seen["other"] == AAPL
    assert seen["now"] == utc(2020, 1, 2, 14, 33)


TRACEBACK_SOURCE = """
from strategies.sdk import AssetType, BarFrequency, StrategyBase, Subscribe


def ratio(a, b):
    return a / b


class Strategy(StrategyBase):
    def on_start(self, now):
        self.count = 0
        return [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)]

    def on_bar(self, event):
        self.count += 1
        if self.count == 5:
            return ratio(event.close, 0)
        return None
"""


def line_of(source: str, text: str) -> int:
    return next(number for number, line in enumerate(source.splitlines(), start=1) if text in line)


def test_a_strategy_exception_ends_the_run_with_a_trimmed_traceback_and_keeps_the_results():
    strategy_class = compile_strategy(TRACEBACK_SOURCE)
    result, recorder, _ = backtest(strategy_class, securities=[MSFT], bars={("MSFT", "equity", "minute"): minute_bars()}, start=START, end=END)
    division, call = line_of(TRACEBACK_SOURCE, "return a / b"), line_of(TRACEBACK_SOURCE, "return ratio(")
    expected = f"ZeroDivisionError: float division by zero in strategy.py:{division} in ratio"
    assert (result.status, result.error_message) == ("error", expected)
    count, issue = recorder.issues()["strategy_exception"]
    assert (count, issue.message, issue.component, issue.classification, issue.severity) == (1, expected, "strategy", "user", "error")
    assert f'File "strategy.py", line {call}, in on_bar' in issue.detail
    assert f'File "strategy.py", line {division}, in ratio' in issue.detail
    assert "return a / b" in issue.detail
    assert "runs/engine" not in issue.detail and PREFIX not in issue.detail
    assert [batch.final for batch in recorder.batches].count(True) == 1 and recorder.batches[-1].final
    assert len(recorder.all("equity")) == 1 + 4  # the start and the four bars before the failure
    assert result.bars_processed == 4


def test_an_exception_in_the_constructor_is_reported_too():
    class Broken(StrategyBase):
        def __init__(self, ctx, config):
            super().__init__(ctx, config)
            raise KeyError("symbol")

        def on_start(self, now):
            return []

    result, recorder, _ = backtest(Broken, start=START, end=END)
    assert result.status == "error"
    assert recorder.issues()["strategy_exception"][1].message == "KeyError: 'symbol' in __init__"


def test_invalid_actions_are_reported_naming_the_field_and_the_run_goes_on():
    config = {
        "subscribe": [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)],
        "script": {
            0: ["buy everything"],
            1: PlaceOrder("MSFT", Intent.BUY, quantity=1),
            2: [PlaceOrder("MSFT", Intent.BUY, quantity=1, notional=100)],
            3: [PlaceOrder("MSFT", "hold", quantity=1)],
            4: [PlaceOrder("MSFT", Intent.BUY, quantity=1, order_type=OrderType.LIMIT)],
            5: [Subscribe("AAPL")],
            6: [PlaceOrder("MSFT", Intent.BUY, quantity="ten")],
            7: [DepositCash(-5)],
            8: [PlaceOrder("MSFT", Intent.BUY, quantity=1)],
            9: [PlaceOrder("MSFT", Intent.BUY, quantity=1, notional=100)],
        },
    }
    result, recorder, _ = backtest(securities=[MSFT, AAPL], bars={("MSFT", "equity", "minute"): minute_bars()}, config=config,
                                   start=START, end=END)
    assert result.status == "complete"
    assert len(result.fills) == 1 and len(recorder.orders()) == 1
    messages = sorted((issue.message, issue.count) for issue in recorder.all("issues") if issue.code == "invalid_action")
    assert messages == sorted([
        ("DepositCash.amount: amount is -5: deposit a positive amount", 1),
        ("PlaceOrder.intent: 'hold' is not one of Intent.BUY, Intent.SELL, Intent.CLOSE, Intent.BUY_TO_CLOSE, Intent.SELL_TO_CLOSE", 1),
        ("PlaceOrder.limit_price: a LIMIT order needs limit_price=...", 1),
        ("PlaceOrder.quantity: 'ten' is not a number: pass an int, float or Decimal", 1),
        ("PlaceOrder.quantity: give exactly one of quantity and notional, e.g. PlaceOrder(symbol, Intent.BUY, quantity=10)", 2),
        ("PlaceOrder: on_bar returned a single PlaceOrder: return a list, e.g. [PlaceOrder(...)]", 1),
        ("str: on_bar returned a str, which is not an action: use Subscribe, PlaceOrder, CancelOrder, CancelAllOrders, ScheduleTimer or DepositCash", 1),
        ("Subscribe: subscriptions are made in on_start only: return Subscribe(...) from on_start", 1),
    ])


def test_kill_stops_the_run_keeping_what_was_recorded():
    polls = []

    def should_stop():
        polls.append(wallclock.monotonic())
        return True

    config = {"subscribe": [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)]}
    result, recorder, strategy = backtest(securities=[MSFT], bars={("MSFT", "equity", "minute"): minute_bars()}, config=config,
                                          start=START, end=END, should_stop=should_stop)
    assert result.status == "stopped" and result.error_message is None
    assert 0 < result.bars_processed < 390
    assert len(polls) == 1  # polled at a wall-clock check, not per bar
    assert strategy.stopped_at == strategy.bars[-1][1]
    assert len(recorder.all("equity")) == result.bars_processed + 1
    assert recorder.batches[-1].final and recorder.batches[-1].progress < 100


def test_data_missing_for_one_subscription_warns_and_for_all_ends_the_run():
    config = {"subscribe": [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE), Subscribe("AAPL", AssetType.EQUITY, BarFrequency.MINUTE)]}
    result, recorder, _ = backtest(securities=[MSFT, AAPL], bars={("MSFT", "equity", "minute"): minute_bars()}, config=dict(config),
                                   start=START, end=END)
    assert result.status == "complete"
    [issue] = recorder.batches[0].issues  # recorded before the first event
    assert (issue.code, issue.severity) == ("data_missing", "warning")
    assert issue.message.startswith("No AAPL (equity) minute bars between 2020-01-02 00:00 and 2020-01-03 00:00 UTC")

    result, recorder, strategy = backtest(securities=[MSFT, AAPL], config=dict(config), start=START, end=END)
    assert result.status == "error"
    codes = [(issue.code, issue.severity) for issue in recorder.all("issues")]
    assert codes.count(("data_missing", "warning")) == 2 and ("data_missing", "error") in codes
    assert strategy.bars == []

    result, recorder, _ = backtest(config={}, start=START, end=END)
    assert result.status == "error" and "subscribed to nothing" in recorder.all("issues")[0].message


def test_data_gaps_inside_sessions_and_missing_sessions_are_warned_about():
    minutes = session_times(DAY_ONE, date(2020, 1, 7))
    holes = (minutes < minutes[60]) | (minutes >= minutes[90])  # 30 minutes missing on the first day
    holes &= (minutes < minutes[390 * 2]) | (minutes >= minutes[390 * 3])  # and the whole third session
    config = {"subscribe": [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)]}
    _, recorder, _ = backtest(securities=[MSFT], bars={("MSFT", "equity", "minute"): minute_bars(times=minutes[holes])},
                              config=config, start=START, end=utc(2020, 1, 8))
    count, issue = recorder.issues()["data_gap"]
    assert (count, issue.severity, issue.classification) == (1, "warning", "system")
    assert "2 gap(s) on the XNYS calendar" in issue.message
    assert issue.detail.splitlines() == [
        "30 minute bars missing after 2020-01-02 15:29 UTC",
        "1 session missing from 2020-01-06 14:30 UTC",
    ]


def test_strategy_logs_and_prints_are_stamped_with_simulated_time_and_bounded():
    source = """
from strategies.sdk import AssetType, BarFrequency, StrategyBase, Subscribe


class Strategy(StrategyBase):
    def on_start(self, now):
        print("starting", "up")
        return [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)]

    def on_bar(self, event):
        self.ctx.log.debug("debug %s", event.close)
        self.ctx.log.warning("close %.2f", event.close)
        return None
"""
    strategy_class = compile_strategy(source)
    bars = {("MSFT", "equity", "minute"): minute_bars()}
    _, recorder, _ = backtest(strategy_class, securities=[MSFT], bars=bars, start=START, end=END, log_max_lines=10_000)
    lines = recorder.all("logs")
    assert (lines[0].level, lines[0].message, lines[0].time) == ("INFO", "starting up", START)
    assert len(lines) == 1 + 390 and {line.level for line in lines[1:]} == {"WARNING"}
    assert lines[1].time == utc(2020, 1, 2, 14, 31)
    assert [line.sequence for line in lines] == list(range(1, 392))

    _, recorder, _ = backtest(strategy_class, securities=[MSFT], bars=bars, start=START, end=END, core={"log_level": "ERROR"})
    assert recorder.all("logs") == []
    _, recorder, _ = backtest(strategy_class, securities=[MSFT], bars=bars, start=START, end=END, core={"log_level": "DEBUG"},
                              log_max_lines=3)
    lines = recorder.all("logs")
    assert [line.sequence for line in lines] == [779, 780, 781]  # the newest three of 1 + 2 × 390


def test_batches_carry_only_what_changed_and_end_with_one_final_batch():
    config = {
        "subscribe": [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)],
        "script": {i: [PlaceOrder("MSFT", Intent.BUY if i % 2 == 0 else Intent.SELL, quantity=1)] for i in range(300)},
    }
    result, recorder, _ = backtest(securities=[MSFT], bars={("MSFT", "equity", "minute"): minute_bars()}, config=config,
                                   start=START, end=END, flush_interval_seconds=0)
    assert len(recorder.batches) >= 2
    assert [batch.final for batch in recorder.batches] == [False] * (len(recorder.batches) - 1) + [True]
    assert recorder.batches[-1].progress == 100 and recorder.batches[-1].bars_processed == 390
    assert [p.time for p in recorder.all("equity")] == sorted({p.time for p in recorder.all("equity")})
    assert len(recorder.all("equity")) == 391
    assert [f.execution_id for f in recorder.all("fills")] == [f.execution_id for f in result.fills]
    for batch in recorder.batches:
        ids = [o.order_id for o in batch.orders]
        assert len(ids) == len(set(ids))  # one snapshot per changed order
    assert sum((e.amount for e in recorder.all("ledger")), Decimal(0)) == result.cash
    assert recorder.batches[-1].portfolio_value == result.portfolio_value


def test_a_slow_handler_is_interrupted_in_the_main_thread():
    source = """
import time
from strategies.sdk import AssetType, BarFrequency, StrategyBase, Subscribe


class Strategy(StrategyBase):
    def on_start(self, now):
        return [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)]

    def on_bar(self, event):
        try:
            time.sleep(5)
        except Exception:
            pass
"""
    strategy_class = compile_strategy(source)
    started = wallclock.monotonic()
    result, recorder, _ = backtest(strategy_class, securities=[MSFT], bars={("MSFT", "equity", "minute"): minute_bars()},
                                   start=START, end=END, core={"handler_timeout_seconds": 0.2})
    assert wallclock.monotonic() - started < 2
    assert result.status == "error"
    count, issue = recorder.issues()["handler_timeout"]
    assert issue.message.startswith("on_bar ran longer than 0.2 s (core.handler_timeout_seconds) and was interrupted in strategy.py:")
    assert "time.sleep(5)" in issue.detail


def test_a_slow_handler_outside_the_main_thread_is_reported_and_the_run_goes_on():
    source = """
import time
from strategies.sdk import AssetType, BarFrequency, StrategyBase, Subscribe


class Strategy(StrategyBase):
    def on_start(self, now):
        return [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)]

    def on_bar(self, event):
        if event.time.minute == 31:
            time.sleep(0.5)
"""
    strategy_class = compile_strategy(source)
    outcome = {}

    def run():
        outcome["result"] = backtest(strategy_class, securities=[MSFT], bars={("MSFT", "equity", "minute"): minute_bars()},
                                     start=START, end=END, core={"handler_timeout_seconds": 0.1})

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=30)
    result, recorder, _ = outcome["result"]
    assert result.status == "complete"
    assert "handler_timeout" in recorder.issues()


def test_the_same_inputs_give_the_same_records():
    def run():
        config = {
            "subscribe": [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)],
            "script": {i: [PlaceOrder("MSFT", Intent.BUY if i % 7 < 3 else Intent.CLOSE, notional=5000)] for i in range(0, 390, 5)},
        }
        result, recorder, _ = backtest(securities=[MSFT], bars={("MSFT", "equity", "minute"): minute_bars()}, config=config,
                                       start=START, end=END, core={"slippage_bps": 3, "commission": {"bps": 1}})
        return result, [recorder.all(name) for name in ("orders", "fills", "ledger", "equity", "positions")]

    first, records = run()
    second, again = run()
    assert records == again
    assert (first.cash, first.portfolio_value) == (second.cash, second.portfolio_value)
    assert len(first.fills) > 20


def test_start_must_be_before_end():
    with pytest.raises(ValueError, match="must be before end"):
        backtest(start=END, end=START)
