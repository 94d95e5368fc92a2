"""The backtest recorder: batches stored by a writer process while the engine goes on.

The first test hands a batch of every kind of record through the writer's encoding; the next
ones drive a real writer process (PostgreSQL, outside a transaction, as in a worker) with small
batches whose stored rows show the order, the bound on waiting batches, failures and the
child's lifetime; the end-to-end test compares a backtest stored by the writer process with the
same backtest stored in line. Depends on: the test database (PostgreSQL for the writer process),
the SMA Crossover example bundle."""

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from django.db import connection, transaction

from issues.models import Issue, LogEntry
from portfolio.models import Fill, LedgerEntry, Order, Position
from runs.engine.records import (
    EquityPoints,
    FillRecord,
    IssueRecord,
    LedgerRecord,
    LogRecord,
    OrderRecord,
    PositionRecord,
    RecordBatch,
)
from runs.execution import run_execute
from runs.models import Run, Status
from runs.runners.record_writer import ChildTraceback, RecordWriteFailed, RecordWriter, batch_decoded, batch_encoded
from runs.runners.recorder import DatabaseRecorder, RunningMetricsRecorder, backtest_recorder
from strategies.sdk.enums import AssetType, Intent, OrderState, OrderType, TimeInForce
from tests.conftest import wait_for
from tests.portfolio.factories import stored_equity
from tests.runs.factories import RunFactory

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "strategies" / "examples" / "sma_crossover"
START = datetime(2017, 1, 3, 14, 30, tzinfo=UTC)


def batch(number: int, *, final: bool = False, kind: str = "deposit") -> RecordBatch:
    """Batch `number`: one ledger entry of `number` dollars, and `number` bars processed."""
    entry = LedgerRecord(START + timedelta(minutes=number), kind, Decimal(number), Decimal(number), None, f"batch {number}")
    return RecordBatch(ledger=[entry], progress=number, bars_processed=number, portfolio_value=Decimal(number), final=final)


def stored_amounts(run: Run) -> list[int]:
    return [int(amount) for amount in LedgerEntry.objects.filter(run=run).order_by("id").values_list("amount", flat=True)]


def needs_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("the writer process is used on PostgreSQL only (set DATABASE_URL)")


class Kept:
    """Stands in for DatabaseRecorder behind RunningMetricsRecorder: keeps what it is given."""

    def __init__(self):
        self.stored: list[int] = []

    def record(self, batch: RecordBatch) -> None:
        self.stored.append(batch.progress)


# -- the hand-over ----------------------------------------------------------------------------


def test_a_batch_handed_to_the_writer_comes_back_as_the_same_records():
    order = OrderRecord(
        7, "r1-7", "MSFT", AssetType.EQUITY, Intent.BUY, "buy", OrderType.LIMIT, TimeInForce.GTC, Decimal("10"), None,
        Decimal("1E+3"), None, OrderState.FILLED, Decimal("10"), Decimal("99.12345678"), Decimal("-0.00"), "", "tag",
        START, START + timedelta(microseconds=1),
    )
    other = OrderRecord(
        8, "r1-8", "MSFT", AssetType.EQUITY, Intent.SELL, "", OrderType.MARKET, TimeInForce.DAY, None, Decimal("500.5"),
        None, None, OrderState.REJECTED, Decimal(0), None, Decimal(0), "two\nlines", "", START, START, "b-8",
    )
    original = RecordBatch(
        orders=[order, other],
        fills=[FillRecord("x7", 7, START, "MSFT", AssetType.EQUITY, "buy", Decimal(10), Decimal("99.12345678"), Decimal("1.00"))],
        positions=[PositionRecord("MSFT", AssetType.EQUITY, Decimal(10), Decimal("99.1"), None, Decimal(991), Decimal(0), Decimal(0), START)],
        ledger=[LedgerRecord(START, "trade", Decimal("-991.23"), Decimal("99008.77"), 7), LedgerRecord(START, "commission", Decimal(-1), Decimal("99007.77"))],
        equity=EquityPoints(np.array([1, 2], dtype=np.int64), np.array([1.5, 2.5]), np.array([0.5, 0.25])),
        logs=[LogRecord(1, START, "INFO", "a line\nand another")],
        issues=[IssueRecord("c", "strategy", "user", "warning", "fp", "m", count=2, first_seen=START), IssueRecord("d", "data", "user", "info", "fp2", "n")],
        progress=40, bars_processed=4000, cash=Decimal("99007.77"), portfolio_value=Decimal("100000.01"), final=True,
    )
    handed_over = batch_decoded(batch_encoded(original))

    for field in fields(RecordBatch):
        before, after = getattr(original, field.name), getattr(handed_over, field.name)
        if field.name == "equity":
            for column in ("times", "values", "cash"):
                np.testing.assert_array_equal(getattr(after, column), getattr(before, column))
            continue
        assert after == before, field.name
        records = zip(before, after, strict=True) if isinstance(before, list) else ()
        for record_before, record_after in records:
            for value_before, value_after in zip(vars_of(record_before), vars_of(record_after), strict=True):
                # Same types (enums stay enums), Decimals with the same exponent, times in UTC.
                assert type(value_after) is type(value_before) and str(value_after) == str(value_before)
                assert getattr(value_after, "tzinfo", None) is getattr(value_before, "tzinfo", None)
    empty = batch_decoded(batch_encoded(RecordBatch(equity=None)))
    assert empty == RecordBatch(equity=None)


def vars_of(record) -> list:
    return [getattr(record, field.name) for field in fields(record)]


# -- the writer process -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_shorter_than_one_batch_stores_its_only_batch_in_line_without_a_process():
    run = RunFactory()
    recorder = RecordWriter(run_id=run.pk, log_max_lines=100, min_seconds_left=0)
    recorder.record(batch(1, final=True))
    assert recorder._process is None
    recorder.close()
    assert stored_amounts(run) == [1]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_run_with_little_left_stores_its_batches_in_line_without_a_process():
    needs_postgres()
    run = RunFactory()
    recorder = RecordWriter(run_id=run.pk, log_max_lines=100, min_seconds_left=3600)
    for number in range(1, 4):
        recorder.record(batch(number))
    recorder.record(batch(4, final=True))
    recorder.close()
    assert recorder._process is None
    assert stored_amounts(run) == [1, 2, 3, 4]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_writer_process_taking_over_from_in_line_batches_carries_on_their_deposits_and_orders():
    needs_postgres()
    run = RunFactory()
    recorder = RecordWriter(run_id=run.pk, log_max_lines=100, min_seconds_left=1)
    placed = OrderRecord(
        1, "r-1", "MSFT", AssetType.EQUITY, Intent.BUY, "buy", OrderType.MARKET, TimeInForce.GTC, Decimal(5), None, None,
        None, OrderState.WORKING, Decimal(0), None, Decimal(0), "", "", START, START,
    )
    first = batch(100)  # a deposit of 100; progress 100 %: nothing left to run, so stored in line
    first.orders = [placed]
    recorder.record(first)
    assert recorder._process is None
    time.sleep(0.05)  # the next batch says 1 %: some 5 s left, so the child takes over
    filled = OrderRecord(*(getattr(placed, name) for name in OrderRecord.__slots__))
    filled.state, filled.filled_quantity, filled.average_fill_price = OrderState.FILLED, Decimal(5), Decimal(20)
    second = RecordBatch(
        orders=[filled],
        fills=[FillRecord("r-1-1", 1, START, "MSFT", AssetType.EQUITY, "buy", Decimal(5), Decimal(20), Decimal(0))],
        ledger=[LedgerRecord(START, "trade", Decimal(-100), Decimal(0), 1, "buy 5 MSFT @ 20")],
        progress=1, bars_processed=2, portfolio_value=Decimal(110),
    )
    recorder.record(second)
    recorder.record(batch(3, final=True, kind="trade"))
    recorder.close()
    assert recorder._process is not None
    run.refresh_from_db()
    assert run.pnl == Decimal(3) - Decimal(100)  # the in-line batch's deposit still counts against the value
    order = Order.objects.get(run=run)  # updated in place, not stored twice
    assert (order.state, order.filled_quantity) == (OrderState.FILLED, Decimal(5))
    assert run.order_stats["orders"] == {"filled": 1}
    assert Fill.objects.get(run=run).order_id == order.pk


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_batches_are_stored_in_order_by_a_child_process_and_close_waits_for_all():
    needs_postgres()
    run = RunFactory()
    recorder = RecordWriter(run_id=run.pk, log_max_lines=100, min_seconds_left=0)
    for number in range(1, 4):
        recorder.record(batch(number))
    recorder.record(batch(4, final=True))  # only queued: the caller goes on meanwhile
    recorder.close()
    assert stored_amounts(run) == [1, 2, 3, 4]  # all stored, in order, by the time close returns
    run.refresh_from_db()
    assert (run.bars_processed, run.portfolio_value, run.pnl) == (4, Decimal(4), Decimal(4) - Decimal(10))
    assert recorder._process.pid != os.getpid() and recorder._process.wait(timeout=30) == 0  # it exits at EOF
    recorder.close()  # again: nothing to do


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_engine_waits_when_the_writer_is_behind_so_memory_stays_bounded():
    needs_postgres()
    run = RunFactory()
    recorder = RecordWriter(run_id=run.pk, log_max_lines=100, min_seconds_left=0, pending=2)
    accepted = []

    def engine():
        for number in range(1, 6):
            recorder.record(batch(number, final=number == 5))
            accepted.append(number)

    with transaction.atomic():
        Run.objects.select_for_update().get(pk=run.pk)  # a slow database: the writer waits for this lock
        thread = threading.Thread(target=engine)
        thread.start()
        wait_for(writer_waits_for_a_lock, timeout=30, interval=0.05, message="the writer to wait for the run's lock")
        time.sleep(0.3)
        # Batch 1 is in the child, 2 and 3 wait; the engine waits to hand over 4.
        assert accepted == [1, 2, 3] and thread.is_alive()
    thread.join(timeout=30)
    recorder.close()
    assert stored_amounts(run) == [1, 2, 3, 4, 5]


def writer_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # a transaction otherwise sees the first one it read
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0] > 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_failed_write_is_raised_in_the_engines_thread_with_the_childs_traceback_and_nothing_after_it_is_written():
    needs_postgres()
    run = RunFactory()
    recorder = RecordWriter(run_id=run.pk, log_max_lines=100, min_seconds_left=0)
    recorder.record(batch(1))
    recorder.record(batch(2, kind="a-kind-longer-than-its-column"))  # the database refuses it
    with pytest.raises(RecordWriteFailed, match="value too long") as failure:
        for number in range(3, 50):  # raised at a later batch, or at the latest by close
            recorder.record(batch(number, final=number == 49))
        recorder.close()
    child_traceback = str(failure.value.__cause__)
    assert isinstance(failure.value.__cause__, ChildTraceback)
    assert child_traceback.startswith("Traceback (most recent call last)") and "ledger_batch_record" in child_traceback
    recorder.close(raise_failure=False)  # a caller already failing is not told again
    assert stored_amounts(run) == [1]
    run.refresh_from_db()
    assert run.bars_processed == 1
    assert recorder._process.wait(timeout=30) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_writer_process_that_dies_is_reported_not_waited_for():
    needs_postgres()
    run = RunFactory()
    recorder = RecordWriter(run_id=run.pk, log_max_lines=100, min_seconds_left=0)
    recorder.record(batch(1))
    wait_for(lambda: stored_amounts(run) == [1], timeout=30, interval=0.05, message="batch 1 to be stored")
    recorder._process.kill()
    with pytest.raises(RecordWriteFailed, match=f"ended unexpectedly \\(exit code -{signal.SIGKILL.value}\\)"):
        for number in range(2, 50):
            recorder.record(batch(number, final=number == 49))
        recorder.close()
    assert stored_amounts(run) == [1]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_writer_process_exits_when_the_engines_process_goes_away():
    needs_postgres()
    from tests.conftest import _test_database_url

    run = RunFactory()
    # An engine's process that starts a writer, hands it a batch and is killed.
    script = (
        "import os, signal, sys, django; django.setup()\n"
        "from runs.engine.records import RecordBatch\n"
        "from runs.runners.record_writer import RecordWriter\n"
        "writer = RecordWriter(run_id=int(sys.argv[1]), log_max_lines=100, min_seconds_left=0)\n"
        "writer.record(RecordBatch(progress=1, bars_processed=1))\n"
        "print(writer._process.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    engine = subprocess.run(
        [sys.executable, "-c", script, str(run.pk)], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DATABASE_URL": _test_database_url(), "DJANGO_SETTINGS_MODULE": "config.settings"},
    )
    assert engine.returncode == -signal.SIGKILL
    writer_pid = int(engine.stdout.split()[0])
    wait_for(lambda: not process_alive(writer_pid), timeout=30, interval=0.05, message="the writer process to exit")
    assert not process_alive(writer_pid), "the writer process outlived its engine"


def process_alive(pid: int) -> bool:
    """Running, that is: not gone and not a zombie left for init to reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.django_db
def test_inside_a_transaction_the_recorder_writes_in_line():
    # The writer process's own connection could not see the caller's uncommitted rows.
    run = RunFactory()
    assert isinstance(backtest_recorder(run_id=run.pk, log_max_lines=100), DatabaseRecorder)


@pytest.mark.django_db
def test_the_recorder_keeps_its_own_map_of_stored_orders_only_for_a_run_without_orders():
    run = RunFactory()
    assert DatabaseRecorder(run_id=run.pk, log_max_lines=100, sole_order_writer=True).stored_orders == {}
    assert DatabaseRecorder(run_id=run.pk, log_max_lines=100).stored_orders is None
    Order.objects.create(
        run=run, order_id=1, client_order_id="r-1", symbol="MSFT", asset_type="equity", intent="buy", side="buy",
        order_type="market", time_in_force="day", quantity=1, state="working",
        created_at="2017-01-03T15:00Z", updated_at="2017-01-03T15:00Z",
    )
    # Orders stored by someone else (a resumed run): look them up.
    assert DatabaseRecorder(run_id=run.pk, log_max_lines=100, sole_order_writer=True).stored_orders is None


# -- end to end on PostgreSQL ---------------------------------------------------------------


@pytest.fixture
def crossover_runs():
    """Two identical backtests of the SMA Crossover example on a week of synthetic minute
    bars (thousands of orders)."""
    from datetime import date

    from securities.services import bars_store
    from securities.synthetic import synthetic_minute_bars
    from strategies.services import strategy_publish_folder
    from tests.securities.factories import SecurityFactory

    security = SecurityFactory(symbol="LKREC", name="Recorder test (synthetic)", asset_type="equity")
    bars = synthetic_minute_bars(symbol="LKREC", start_date=date(2017, 1, 3), end_date=date(2017, 1, 31), seed=3, start_price=50.0)
    bars_store(security=security, frequency="minute", bars=bars, source="test", synthetic=True)
    version = strategy_publish_folder(folder=EXAMPLE, name="SMA Crossover", message="test")
    config = {
        "environment": {"start": "2017-01-03", "end": "2017-01-31"},
        "strategy": {"symbol": "LKREC", "fast": 3, "slow": 7, "frequency": "minute"},
        "core": {"commission": {"per_share": "0.005", "minimum": "1"}},
    }
    return [RunFactory(strategy_version=version, config=config, status=Status.STARTING) for _ in range(2)]


def stored_results(run: Run) -> dict:
    run.refresh_from_db()
    fields = ("order_id", "client_order_id", "state", "quantity", "notional", "filled_quantity", "average_fill_price", "commission", "created_at", "updated_at")
    return {
        "status": run.status,
        "portfolio_value": run.portfolio_value,
        "metrics": run.metrics,
        "order_stats": run.order_stats,
        "orders": list(Order.objects.filter(run=run).order_by("order_id").values_list(*fields)),
        "fills": list(Fill.objects.filter(run=run).order_by("time", "execution_id").values_list("order__order_id", "time", "quantity", "price", "commission")),
        "ledger": list(LedgerEntry.objects.filter(run=run).order_by("id").values_list("time", "kind", "amount", "balance", "order_id")),
        "positions": list(Position.objects.filter(run=run).values_list("symbol", "quantity", "average_price", "realized_pnl")),
        "logs": list(LogEntry.objects.filter(run=run).order_by("sequence").values_list("sequence", "time", "level", "message")),
        "issues": list(Issue.objects.filter(run=run).order_by("fingerprint").values_list("code", "fingerprint", "count", "message")),
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_backtest_stored_by_the_writer_process_matches_the_same_backtest_stored_in_line(crossover_runs, settings):
    needs_postgres()
    # Many batches, so the writer process starts (a run shorter than one batch is stored in line).
    settings.BACKTEST_FLUSH_SECONDS = 0.005
    settings.RECORD_WRITER_MIN_SECONDS = 0
    by_process, in_line = crossover_runs
    recorder = backtest_recorder(run_id=by_process.pk, log_max_lines=100)
    assert isinstance(recorder, RecordWriter)  # outside a transaction on PostgreSQL
    recorder.close()

    assert run_execute(run_id=by_process.pk) == Status.COMPLETE
    with transaction.atomic():  # the caller's transaction: written in line
        assert run_execute(run_id=in_line.pk) == Status.COMPLETE

    stored, inline = stored_results(by_process), stored_results(in_line)
    assert len(stored["orders"]) > 100 and len(stored["fills"]) == stored["order_stats"]["fills"]
    prefix = {by_process.pk: f"r{by_process.pk}-", in_line.pk: f"r{in_line.pk}-"}
    for results, run in ((stored, by_process), (inline, in_line)):
        # Client order ids carry the run id; compare the rest.
        results["orders"] = [(o[0], o[1].removeprefix(prefix[run.pk]), *o[2:]) for o in results["orders"]]
    assert stored == inline
    for column in range(3):  # times, portfolio values, cash
        np.testing.assert_array_equal(stored_equity(by_process)[column], stored_equity(in_line)[column])
    assert sum(amount for (_time, _kind, amount, _balance, _order) in stored["ledger"]) == stored["ledger"][-1][3]


# -- running metrics (Paper) -----------------------------------------------------------------


def paper_batch(first_minute: int, values: list[float], fills=(), *, final: bool = False) -> RecordBatch:
    from runs.engine.records import EquityPoints

    minute = 60 * 10**9
    start = 1_483_453_800 * 10**9  # 2017-01-03 14:30 UTC
    times = np.array([start + (first_minute + i) * minute for i in range(len(values))], dtype=np.int64)
    equity = EquityPoints(times, np.array(values, dtype=np.float64), np.array(values, dtype=np.float64))
    return RecordBatch(
        orders=[], fills=list(fills), positions=[], ledger=[], equity=equity, logs=[], issues=[], progress=0,
        bars_processed=first_minute + len(values), cash=None, portfolio_value=None, final=final,
    )


def fill(order_id: int, side: str, price: str, minute: int):
    from datetime import UTC, datetime
    from decimal import Decimal

    from runs.engine.records import FillRecord
    from strategies.sdk.enums import AssetType

    return FillRecord(f"x{order_id}", order_id, datetime(2017, 1, 3, 14, 30 + minute, tzinfo=UTC), "MSFT", AssetType.EQUITY, side, Decimal(10), Decimal(price), Decimal(0))


@pytest.mark.django_db
def test_a_running_runs_metrics_are_brought_up_to_date_from_the_batches_so_far():
    from portfolio.metrics import compute_metrics, round_trips_from_fills
    from runs.runners.backtest import DatabaseMarketData
    from tests.securities.factories import SecurityFactory

    SecurityFactory(symbol="MSFT", asset_type="equity")
    run = RunFactory(status=Status.RUNNING, mode="paper")
    kept = Kept()
    recorder = RunningMetricsRecorder(kept, run_id=run.pk, market_data=DatabaseMarketData(), every_seconds=0)
    trades = [fill(1, "buy", "100", 1), fill(2, "sell", "103", 3)]
    recorder.record(paper_batch(0, [100_000.0, 100_010.0]))
    recorder.record(paper_batch(2, [100_020.0, 100_030.0], trades))
    assert kept.stored == [0, 0]  # every batch is passed on

    run.refresh_from_db()
    values = np.array([100_000.0, 100_010.0, 100_020.0, 100_030.0])
    assert run.metrics["trades"] == 1 and run.metrics["win_rate"] == 1.0
    assert run.metrics["total_return"] == pytest.approx(values[-1] / values[0] - 1)
    times = np.array([1_483_453_800 * 10**9 + i * 60 * 10**9 for i in range(4)], dtype=np.int64)
    expected = compute_metrics(
        equity_times=times, equity_values=values, round_trips=round_trips_from_fills(trades), traded_notional=2030.0
    )
    assert run.metrics == pytest.approx(expected, nan_ok=True)

    recorder.record(paper_batch(4, [99_000.0]))  # the next update covers every point so far
    run.refresh_from_db()
    assert run.metrics["total_return"] == pytest.approx(99_000.0 / 100_000.0 - 1)
    assert run.metrics["final_value"] == 99_000.0 and run.metrics["start_value"] == 100_000.0


@pytest.mark.django_db
def test_running_metrics_wait_for_their_interval_and_leave_the_final_ones_to_the_runner():
    from runs.runners.backtest import DatabaseMarketData

    run = RunFactory(status=Status.RUNNING, mode="paper", metrics={})
    recorder = RunningMetricsRecorder(Kept(), run_id=run.pk, market_data=DatabaseMarketData(), every_seconds=3600)
    recorder.record(paper_batch(0, [100_000.0, 100_500.0]))
    run.refresh_from_db()
    assert run.metrics == {}  # not yet: once an hour here

    recorder.every_seconds = 0
    recorder.record(paper_batch(2, [100_700.0], final=True))
    run.refresh_from_db()
    assert run.metrics == {}  # the final batch: the runner stores the final metrics

    finished = RunFactory(status=Status.STOPPED, mode="paper", metrics={"trades": 7})
    late = RunningMetricsRecorder(Kept(), run_id=finished.pk, market_data=DatabaseMarketData(), every_seconds=0)
    late.record(paper_batch(0, [100_000.0, 100_500.0]))
    finished.refresh_from_db()
    assert finished.metrics == {"trades": 7}  # a run that has ended keeps its final metrics
