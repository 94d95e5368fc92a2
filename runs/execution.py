"""What the `execute_run` task does: claim the run, hand it to its mode's runner, and always
leave it in a finished state. Safe to deliver twice."""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from issues.services import issue_record
from runs.models import Mode, Run, RunEvent, Status
from runs.runners import RunOutcome, runner_for

logger = logging.getLogger(__name__)

# A running run whose heartbeat is older than this has nobody behind it.
HEARTBEAT_STALE_AFTER = timedelta(minutes=2)
FINISH_EVENT = {Status.COMPLETE: RunEvent.Kind.COMPLETED, Status.STOPPED: RunEvent.Kind.STOPPED, Status.ERROR: RunEvent.Kind.FAILED}


def run_execute(*, run_id: int) -> str | None:
    """Returns the final status, or None when this delivery had nothing to do."""
    now = timezone.now()
    if not Run.objects.filter(pk=run_id, status=Status.STARTING).update(status=Status.RUNNING, started_at=now, heartbeat_at=now):
        from runs.runners.live import live_resume_claim  # the broker client loads only where needed

        if not live_resume_claim(run_id=run_id):  # a Live run whose worker died is taken over, not failed
            run_orphan_recover(run_id=run_id)
            return None
    run = Run.objects.select_related("strategy_version__strategy").get(pk=run_id)
    RunEvent.objects.create(run=run, kind=RunEvent.Kind.STARTED)
    outcome = RunOutcome(status=Status.ERROR, message="the runner ended without a result")
    try:
        outcome = runner_for(run.mode)(run)
    except Exception as exc:
        logger.exception("run %s failed inside the platform", run_id)
        outcome = RunOutcome(status=Status.ERROR, message=f"{type(exc).__name__}: {exc}")
        issue_record(
            run_id=run_id,
            code="internal_error",
            component="platform",
            classification="system",
            severity="error",
            message=f"The platform failed while running this run ({type(exc).__name__}: {str(exc)[:300]}). Retry with Reset and Start; if it happens again, call support with the detail below.",
            detail=traceback.format_exc(),
        )
    finally:
        run_finish(run_id=run_id, status=outcome.status, note=outcome.message)
    return outcome.status


@transaction.atomic
def run_finish(*, run_id: int, status: str, note: str = "") -> bool:
    """running → complete | stopped | error, once."""
    if status not in FINISH_EVENT:
        status, note = Status.ERROR, f"unknown runner status {status!r}"
    now = timezone.now()
    fields = {"status": status, "finished_at": now, "heartbeat_at": now}
    if status == Status.COMPLETE:
        fields["progress"] = 100
    if not Run.objects.filter(pk=run_id, status=Status.RUNNING).update(**fields):
        return False
    RunEvent.objects.create(run_id=run_id, kind=FINISH_EVENT[status], note=note[:300])
    return True


@transaction.atomic
def run_orphan_recover(*, run_id: int) -> bool:
    """A redelivered task finding its run `running` with a stale heartbeat: the worker that ran
    it died. Mark it so instead of leaving it `running` with nobody behind it."""
    stale_before = timezone.now() - HEARTBEAT_STALE_AFTER
    if not Run.objects.filter(pk=run_id, status=Status.RUNNING, heartbeat_at__lt=stale_before).update(status=Status.ERROR, finished_at=timezone.now()):
        return False
    issue_record(
        run_id=run_id,
        code="worker_lost",
        component="platform",
        classification="system",
        severity="error",
        message="The worker running this run stopped without finishing it. Results so far are kept; Reset and Start to run it again.",
    )
    RunEvent.objects.create(run_id=run_id, kind=RunEvent.Kind.FAILED, note="worker lost")
    return True


def runs_stale_sweep() -> dict[str, list[int]]:
    """Runs left `running` by a worker that died (heartbeat older than HEARTBEAT_STALE_AFTER).
    Backtest and Paper runs are marked `error` with a `worker_lost` issue; a Live run's task is
    delivered again on the `live` queue, where a worker takes the run over (reconciling with the
    broker first) or, if it cannot, marks it `worker_lost` the same way. Safe to run anywhere,
    any number of times: every change is compare-and-set. Returns the run ids by outcome."""
    from runs.services import _enqueue_execute

    stale_before = timezone.now() - HEARTBEAT_STALE_AFTER
    outcome: dict[str, list[int]] = {"worker_lost": [], "redelivered": []}
    for run in Run.objects.filter(status=Status.RUNNING, heartbeat_at__lt=stale_before).only("pk", "mode"):
        if run.mode == Mode.LIVE:
            with transaction.atomic():
                _enqueue_execute(run)
            outcome["redelivered"].append(run.pk)
        elif run_orphan_recover(run_id=run.pk):
            outcome["worker_lost"].append(run.pk)
    if outcome["worker_lost"] or outcome["redelivered"]:
        logger.warning("stale runs swept: %s", outcome)
    return outcome
