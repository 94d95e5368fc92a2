"""Run lifecycle (product.md §7). Every state change is compare-and-set on `status`; tasks are
enqueued on commit and take the run id only."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from issues.models import Issue, LogEntry
from issues.services import audit_record
from portfolio.models import EquityChunk, Fill, LedgerEntry, Order, Position
from runs.config import RunConfigError, run_config_check
from runs.models import Mode, Run, RunEvent, Status

QUEUE_BY_MODE = {Mode.BACKTEST: "backtests", Mode.PAPER: "live", Mode.LIVE: "live"}
# Modes whose runner this deployment has (runs.runners.runner_for).
RUNNABLE_MODES = {Mode.BACKTEST, Mode.PAPER, Mode.LIVE}


class RunActionError(Exception):
    """An action that the run's current state does not allow; the message says why."""


def run_role_required(mode: str) -> tuple[str, str]:
    """(permission, role name) a user needs to act on runs of `mode`; the console and the API
    check it in their views with the same words."""
    return ("runs.trade_live", "Live trader") if mode == Mode.LIVE else ("runs.operate_run", "Operator")


def _authorize(*, user, action: str, run: Run | None, mode: str) -> None:
    """`user=None` is the system itself (management commands, tasks)."""
    if user is None:
        return
    refusal = None
    if mode == Mode.LIVE and not settings.LIVE_TRADING_ENABLED and action in ("run.create", "run.start", "run.update_config"):
        refusal = "Live trading is disabled on this deployment (LIVE_TRADING_ENABLED)."
    elif not (user.is_active and user.has_perm(run_role_required(mode)[0])):
        refusal = f"You need the {run_role_required(mode)[1]} role to do this."
    if refusal:
        # Outside the service's transaction, so the refusal's audit record is kept.
        audit_record(actor=user, action=action, object_type="run", object_id=run.pk if run else "", allowed=False, detail={"mode": mode})
        raise PermissionDenied(refusal)


def _event(run: Run, kind: str, user=None, note: str = "") -> None:
    RunEvent.objects.create(run=run, kind=kind, actor=user if user is not None and user.is_authenticated else None, note=note)


def _enqueue_execute(run: Run) -> None:
    from runs.tasks import execute_run

    run_id, queue = run.pk, QUEUE_BY_MODE[run.mode]
    transaction.on_commit(lambda: execute_run.apply_async(args=[run_id], queue=queue))


def run_create(*, user, strategy_version, mode: str = Mode.BACKTEST, description: str, config: dict, copied_from: Run | None = None, study_id: int | None = None) -> Run:
    """Create a run. Invalid values are refused; missing required values are allowed (the run
    can be completed with Edit Config before Start)."""
    if mode not in Mode.values:
        raise RunConfigError({"mode": f"unknown mode '{mode}': choose one of {', '.join(Mode.values)}"})
    _authorize(user=user, action="run.create", run=None, mode=mode)
    with transaction.atomic():
        description = (description or "").strip()
        errors = {} if description else {"description": "required: say what this run is for"}
        check = run_config_check(config=config, mode=mode, schema=strategy_version.config_schema)
        errors.update(check.errors)
        if errors:
            raise RunConfigError(errors)
        run = Run.objects.create(
            description=description[:200],
            strategy_version=strategy_version,
            mode=mode,
            config=check.config,
            created_by=user,
            copied_from=copied_from,
            study_id=study_id,
        )
        _event(run, RunEvent.Kind.CREATED, user, note=f"copied from run {copied_from.pk}" if copied_from else "")
        audit_record(actor=user, action="run.create", object_type="run", object_id=run.pk, allowed=True, detail={"mode": mode})
        return run


def run_update_config(*, run: Run, user, config: dict, description: str | None = None) -> Run:
    _authorize(user=user, action="run.update_config", run=run, mode=run.mode)
    with transaction.atomic():
        check = run_config_check(config=config, mode=run.mode, schema=run.strategy_version.config_schema)
        errors = dict(check.errors)
        if description is not None and not description.strip():
            errors["description"] = "required: say what this run is for"
        if errors:
            raise RunConfigError(errors)
        fields = {"config": check.config}
        if description is not None:
            fields["description"] = description.strip()[:200]
        if not Run.objects.filter(pk=run.pk, status=Status.NEW).update(**fields):
            raise RunActionError("The config is read-only once the run has started: use Copy to change it in a new run.")
        _event(run, RunEvent.Kind.CONFIG_UPDATED, user)
        audit_record(actor=user, action="run.update_config", object_type="run", object_id=run.pk, allowed=True)
        run.refresh_from_db()
        return run


def run_start_blocker(*, run: Run) -> str | None:
    """Why Start Run is unavailable right now, or None when it can be pressed."""
    if run.status != Status.NEW:
        return f"the run is {run.status}"
    if run.mode not in RUNNABLE_MODES:
        return f"{run.get_mode_display()} runs cannot be started on this deployment yet"
    if run.mode == Mode.LIVE and not settings.LIVE_TRADING_ENABLED:
        return "Live trading is disabled on this deployment"
    return run_config_check(config=run.config, mode=run.mode, schema=run.strategy_version.config_schema).start_blocker()



def run_start(*, run: Run, user, enqueue: bool = True) -> Run:
    """new → starting, and enqueue the run's task once the transaction commits. Two concurrent
    Starts enqueue one task: only one compare-and-set can succeed. `enqueue=False` is for callers
    that execute the run in their own process (the CLI without --via-worker, the demo seed)."""
    _authorize(user=user, action="run.start", run=run, mode=run.mode)
    with transaction.atomic():
        blocker = run_start_blocker(run=run)
        if blocker:
            raise RunActionError(f"Cannot start: {blocker}.")
        now = timezone.now()
        if not Run.objects.filter(pk=run.pk, status=Status.NEW).update(status=Status.STARTING, start_requested_at=now, progress=0):
            raise RunActionError("Cannot start: the run was started by someone else a moment ago.")
        run.refresh_from_db()
        _event(run, RunEvent.Kind.START_REQUESTED, user)
        audit_record(actor=user, action="run.start", object_type="run", object_id=run.pk, allowed=True)
        if enqueue:
            _enqueue_execute(run)
        return run


def run_kill(*, run: Run, user) -> Run:
    """Ask a starting or running run to stop. A run still `starting` stops at once (its task
    will find it no longer starting and do nothing); a running one is stopped by its runner,
    which checks about once a second."""
    _authorize(user=user, action="run.kill", run=run, mode=run.mode)
    with transaction.atomic():
        now = timezone.now()
        if Run.objects.filter(pk=run.pk, status=Status.STARTING).update(status=Status.STOPPED, kill_requested_at=now, finished_at=now):
            run.refresh_from_db()
            _event(run, RunEvent.Kind.KILL_REQUESTED, user)
            _event(run, RunEvent.Kind.STOPPED, None, note="killed before the runner started")
        elif Run.objects.filter(pk=run.pk, status=Status.RUNNING, kill_requested_at__isnull=True).update(kill_requested_at=now):
            run.refresh_from_db()
            _event(run, RunEvent.Kind.KILL_REQUESTED, user)
        else:
            run.refresh_from_db()
            if run.status == Status.RUNNING:
                raise RunActionError("A kill was already requested; the run is stopping.")
            raise RunActionError(f"Cannot kill: the run is {run.status}.")
        audit_record(actor=user, action="run.kill", object_type="run", object_id=run.pk, allowed=True)
        return run


def run_copy(*, run: Run, user, description: str | None = None) -> Run:
    return run_create(
        user=user,
        strategy_version=run.strategy_version,
        mode=run.mode,
        description=description or f"Copy of {run.description}"[:200],
        config=run.config,
        copied_from=run,
    )


def run_results_clear(*, run_id: int) -> None:
    """Everything a run recorded (not its config, not its timeline)."""
    for model in (Fill, Order, Position, LedgerEntry, EquityChunk, Issue, LogEntry):
        model.objects.filter(run_id=run_id).delete()



def run_reset(*, run: Run, user) -> Run:
    """Back to `new` with results cleared. Backtest and Paper only, once started, not running."""
    if run.mode == Mode.LIVE:
        raise RunActionError("Live runs are never reset: their orders happened at a real broker. Use Copy to start again.")
    _authorize(user=user, action="run.reset", run=run, mode=run.mode)
    with transaction.atomic():
        updated = Run.objects.filter(pk=run.pk, status__in=[Status.COMPLETE, Status.STOPPED, Status.ERROR]).update(
            status=Status.NEW,
            start_requested_at=None,
            started_at=None,
            kill_requested_at=None,
            finished_at=None,
            heartbeat_at=None,
            progress=0,
            bars_processed=0,
            portfolio_value=None,
            pnl=None,
            metrics={},
            order_stats={},
        )
        if not updated:
            run.refresh_from_db()
            raise RunActionError(f"Cannot reset: the run is {run.status}; only finished runs can be reset.")
        run_results_clear(run_id=run.pk)
        run.refresh_from_db()
        _event(run, RunEvent.Kind.RESET, user)
        audit_record(actor=user, action="run.reset", object_type="run", object_id=run.pk, allowed=True)
        return run
