"""DatabaseRecorder: stores the engine's record batches and keeps the run row current."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from issues.services import issue_record, log_entries_append
from portfolio.services import OrderStatsChange, ledger_batch_record, order_stats_apply
from runs.engine.records import RecordBatch
from runs.models import Run


class DatabaseRecorder:
    def __init__(self, *, run_id: int, log_max_lines: int):
        self.run_id = run_id
        self.log_max_lines = log_max_lines
        self.deposits = Decimal(0)
        self.batches = 0

    def record(self, batch: RecordBatch) -> None:
        self.deposits += sum((entry.amount for entry in batch.ledger if entry.kind == "deposit"), Decimal(0))
        with transaction.atomic():
            change = ledger_batch_record(
                run_id=self.run_id,
                orders=batch.orders,
                fills=batch.fills,
                positions=batch.positions,
                ledger=batch.ledger,
                equity=batch.equity,
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
        self.batches += 1


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
