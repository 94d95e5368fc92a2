"""DatabaseRecorder: stores the engine's record batches and keeps the run row current."""

from __future__ import annotations

import time
from decimal import Decimal

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from issues.services import issue_record, log_entries_append
from portfolio.metrics import metrics_from_fills
from portfolio.models import Order
from portfolio.services import OrderStatsChange, ledger_batch_record, order_stats_apply
from runs.engine.records import RecordBatch
from runs.models import Run, Status
from runs.runners.record_writer import RecordWriter, backtest_database_recorder


class DatabaseRecorder:
    """`sole_order_writer`: nothing else writes this run's orders (a backtest, unlike Live,
    which stores each order before sending it). If the run has no orders yet, the recorder
    then keeps the stored orders' keys and states itself instead of looking them up per batch."""

    def __init__(self, *, run_id: int, log_max_lines: int, sole_order_writer: bool = False):
        self.run_id = run_id
        self.log_max_lines = log_max_lines
        self.deposits = Decimal(0)
        self.batches = 0
        self.stored_orders = None
        if sole_order_writer and not Order.objects.filter(run_id=run_id).exists():
            self.stored_orders = {}

    def record(self, batch: RecordBatch) -> None:
        self.deposits += sum((entry.amount for entry in batch.ledger if entry.kind == "deposit"), Decimal(0))
        try:
            self._store(batch)
        except BaseException:
            self.stored_orders = None  # it may now claim orders the rolled-back batch held
            raise
        self.batches += 1

    def _store(self, batch: RecordBatch) -> None:
        with transaction.atomic():
            change = ledger_batch_record(
                run_id=self.run_id,
                orders=batch.orders,
                fills=batch.fills,
                positions=batch.positions,
                ledger=batch.ledger,
                equity=batch.equity,
                stored_orders=self.stored_orders,
            )
            log_entries_append(
                run_id=self.run_id,
                entries=[(line.sequence, line.time, line.level, line.message) for line in batch.logs],
                max_lines=self.log_max_lines,
            )
            for issue in batch.issues:
                issue_record(
                    run_id=self.run_id,
                    code=issue.code,
                    component=issue.component,
                    classification=issue.classification,
                    severity=issue.severity,
                    message=issue.message,
                    detail=issue.detail,
                    fingerprint=issue.fingerprint,
                    count=issue.count,
                    first_seen=issue.first_seen,
                    last_seen=issue.last_seen,
                )
            summary = {
                "progress": min(max(int(batch.progress), 0), 100),
                "bars_processed": batch.bars_processed,
                "heartbeat_at": timezone.now(),
            }
            if batch.portfolio_value is not None:
                summary["portfolio_value"] = batch.portfolio_value
                summary["pnl"] = batch.portfolio_value - self.deposits
            order_stats_add(run_id=self.run_id, change=change, **summary)


class RunningMetricsRecorder:
    """For runs that go on until they are killed (Paper): keeps the run's headline metrics
    current while it runs. Passes every batch on, keeps the equity points and fills the batches
    carried, and about every `every_seconds` works the metrics out from them and stores them on
    the run. The final metrics (with the benchmark, when the run has one) are the runner's."""

    def __init__(self, recorder, *, run_id: int, market_data, every_seconds: float = 60.0):
        self.recorder = recorder
        self.run_id = run_id
        self.market_data = market_data  # the engine's MarketData: contract multipliers of the traded symbols
        self.every_seconds = every_seconds
        self._times: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._fills: list = []
        self._stored_at = time.monotonic()

    def record(self, batch: RecordBatch) -> None:
        self.recorder.record(batch)
        if len(batch.equity):
            self._times.append(batch.equity.times)
            self._values.append(batch.equity.values)
        self._fills.extend(batch.fills)
        if not batch.final and time.monotonic() - self._stored_at >= self.every_seconds:
            self._stored_at = time.monotonic()
            self.metrics_store()

    def metrics_store(self) -> None:
        times = np.concatenate(self._times) if self._times else np.empty(0, dtype=np.int64)
        values = np.concatenate(self._values) if self._values else np.empty(0)
        self._times, self._values = [times], [values]  # one array each from now on, not one per batch
        if len(times) < 2:
            return  # nothing to measure yet
        multipliers = {}
        for key in {(fill.symbol, str(fill.asset_type)) for fill in self._fills}:
            security = self.market_data.security(*key)
            multipliers[key] = security.multiplier if security is not None else Decimal(1)
        metrics = metrics_from_fills(equity_times=times, equity_values=values, fills=self._fills, multipliers=multipliers)
        Run.objects.filter(pk=self.run_id, status=Status.RUNNING).update(metrics=metrics)


def backtest_recorder(*, run_id: int, log_max_lines: int) -> DatabaseRecorder | RecordWriter:
    """The recorder of a backtest: a writer process on PostgreSQL outside a transaction (a
    worker, the backtest command); in line otherwise (SQLite allows one writer at a time; a
    caller's open transaction, as in most tests, would be invisible to the process)."""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        return RecordWriter(run_id=run_id, log_max_lines=log_max_lines, min_seconds_left=settings.RECORD_WRITER_MIN_SECONDS)
    return backtest_database_recorder(run_id=run_id, log_max_lines=log_max_lines)


@transaction.atomic
def order_stats_add(*, run_id: int, change: OrderStatsChange, **fields) -> None:
    """Add what a stored batch changed to the run's order statistics (and set `fields` of the
    run in the same update). The run row is locked for the read-modify-write: every writer of a
    run's orders (the recorder, the Live runner storing an order before sending it) goes through
    here."""
    stats = Run.objects.select_for_update().filter(pk=run_id).values_list("order_stats", flat=True).first()
    Run.objects.filter(pk=run_id).update(order_stats=order_stats_apply(stats or {}, change), **fields)


class KillSwitch:
    """`should_stop` for the engine: true once a kill has been recorded for the run. The engine
    polls it about once a second, so this is one indexed read per second."""

    def __init__(self, run_id: int):
        self.run_id = run_id

    def __call__(self) -> bool:
        return Run.objects.filter(pk=self.run_id, kill_requested_at__isnull=False).exists()
