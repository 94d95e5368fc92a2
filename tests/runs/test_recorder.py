"""The backtest recorder: batches stored in a writer thread while the engine goes on.

The first tests drive BackgroundRecorder with a stand-in for the database recorder (any object
with `record(batch)`), so the order, the bound and failures can be controlled; the last ones
run a backtest end to end on PostgreSQL outside a transaction, where the writer thread is used,
and compare what it stored with the same backtest stored in line. Depends on: the test
database (PostgreSQL for the end-to-end tests), the SMA Crossover example bundle."""

import threading
from pathlib import Path

import numpy as np
import pytest
from django.db import connection, transaction

from portfolio.models import Fill, LedgerEntry, Order, Position
from runs.engine.records import RecordBatch
from runs.execution import run_execute
from runs.models import Run, Status
from runs.runners.recorder import BackgroundRecorder, DatabaseRecorder, RunningMetricsRecorder, backtest_recorder
from tests.portfolio.factories import stored_equity
from tests.runs.factories import RunFactory

EXAMPLE = Path(__file__).resolve().parents[2] / "strategies" / "examples" / "sma_crossover"


def batch(number: int, *, final: bool = False) -> RecordBatch:
    return RecordBatch(
        orders=[], fills=[], positions=[], ledger=[], equity=None, logs=[], issues=[], progress=number,
        bars_processed=number, cash=None, portfolio_value=None, final=final,
    )


class Kept:
    """Stands in for DatabaseRecorder: keeps what it is given; may wait for a go, or fail."""

    run_id = 0

    def __init__(self, *, fail_at: int | None = None):
        self.stored: list[int] = []
        self.fail_at = fail_at
        self.go = threading.Event()
        self.go.set()
        self.thread_names: set[str] = set()

    def record(self, batch: RecordBatch) -> None:
        self.go.wait(timeout=10)
        self.thread_names.add(threading.current_thread().name)
        if batch.progress == self.fail_at:
            raise RuntimeError(f"the database refused batch {batch.progress}")
        self.stored.append(batch.progress)


def test_batches_are_stored_in_order_in_another_thread_and_close_waits_for_all():
    kept = Kept()
    kept.go.clear()  # a slow database: the final batch is still queued when record returns
    recorder = BackgroundRecorder(kept)
    for number in range(1, 3):
        recorder.record(batch(number))
    recorder.record(batch(3, final=True))
    assert kept.stored == []  # the caller goes on meanwhile (the runner works out the metrics)
    kept.go.set()
    recorder.close()
    assert kept.stored == [1, 2, 3]  # all stored by the time close returns
    assert kept.thread_names == {"run-0-writer"} and threading.current_thread().name not in kept.thread_names
    recorder.close()  # again: nothing to do
    assert not recorder._thread.is_alive()


def test_a_run_shorter_than_one_batch_stores_its_only_batch_in_line_without_a_thread():
    kept = Kept()
    recorder = BackgroundRecorder(kept)
    recorder.record(batch(1, final=True))
    assert kept.stored == [1] and kept.thread_names == {threading.current_thread().name}
    assert recorder._thread is None
    recorder.close()


def test_the_engine_waits_when_the_writer_is_behind_so_memory_stays_bounded():
    kept = Kept()
    kept.go.clear()  # the database is slow
    recorder = BackgroundRecorder(kept, pending=1)
    recorder.record(batch(1))  # taken by the writer, which now waits
    recorder.record(batch(2))  # waits in the queue
    third = threading.Thread(target=recorder.record, args=(batch(3),))
    third.start()
    third.join(timeout=0.5)
    assert third.is_alive(), "a third batch must wait while two are pending"
    kept.go.set()
    third.join(timeout=10)
    recorder.record(batch(4, final=True))
    recorder.close()
    assert kept.stored == [1, 2, 3, 4]


def test_a_failed_write_is_raised_in_the_engines_thread_and_nothing_after_it_is_written():
    kept = Kept(fail_at=2)
    recorder = BackgroundRecorder(kept)
    recorder.record(batch(1))
    recorder.record(batch(2))
    with pytest.raises(RuntimeError, match="refused batch 2"):
        for number in range(3, 50):  # raised at a later batch, or at the latest by close
            recorder.record(batch(number, final=number == 49))
        recorder.close()
    recorder.close(raise_failure=False)  # a caller already failing is not told again
    assert kept.stored == [1]
    assert not recorder._thread.is_alive()


def test_a_failed_final_write_is_raised_by_close():
    kept = Kept(fail_at=3)
    recorder = BackgroundRecorder(kept)
    recorder.record(batch(1))
    recorder.record(batch(2))
    recorder.record(batch(3, final=True))
    with pytest.raises(RuntimeError, match="refused batch 3"):
        recorder.close()
    assert kept.stored == [1, 2]


@pytest.mark.django_db
def test_inside_a_transaction_the_recorder_writes_in_line():
    # The writer thread's own connection could not see the caller's uncommitted rows.
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
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_backtest_stored_by_the_writer_thread_matches_the_same_backtest_stored_in_line(crossover_runs, settings):
    if connection.vendor != "postgresql":
        pytest.skip("the writer thread is used on PostgreSQL only (set DATABASE_URL)")
    # Many batches, so the writer thread starts (a run shorter than one batch is stored in line).
    settings.BACKTEST_FLUSH_SECONDS = 0.005
    in_thread, in_line = crossover_runs
    recorder = backtest_recorder(run_id=in_thread.pk, log_max_lines=100)
    assert isinstance(recorder, BackgroundRecorder)  # outside a transaction on PostgreSQL
    recorder.close()

    assert run_execute(run_id=in_thread.pk) == Status.COMPLETE
    with transaction.atomic():  # the caller's transaction: written in line
        assert run_execute(run_id=in_line.pk) == Status.COMPLETE

    threaded, inline = stored_results(in_thread), stored_results(in_line)
    assert len(threaded["orders"]) > 100 and len(threaded["fills"]) == threaded["order_stats"]["fills"]
    prefix = {in_thread.pk: f"r{in_thread.pk}-", in_line.pk: f"r{in_line.pk}-"}
    for results, run in ((threaded, in_thread), (inline, in_line)):
        # Client order ids carry the run id; compare the rest.
        results["orders"] = [(o[0], o[1].removeprefix(prefix[run.pk]), *o[2:]) for o in results["orders"]]
    assert threaded == inline
    np.testing.assert_array_equal(stored_equity(in_thread)[1], stored_equity(in_line)[1])
    assert sum(amount for (_time, _kind, amount, _balance, _order) in threaded["ledger"]) == threaded["ledger"][-1][3]


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
