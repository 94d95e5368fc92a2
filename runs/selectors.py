"""Reading runs for the console: the runs list, one run's detail and timeline, and which actions
the detail panel offers (the services enforce the same rules; this only says what to show)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q, QuerySet

from runs.models import Mode, Run, RunEvent, Status
from runs.services import run_start_blocker

# Statuses that change by themselves: the console keeps polling while one is on screen.
ACTIVE_STATUSES = (Status.STARTING, Status.RUNNING)
TIMELINE_KINDS = (
    RunEvent.Kind.CREATED,
    RunEvent.Kind.START_REQUESTED,
    RunEvent.Kind.STARTED,
    RunEvent.Kind.KILL_REQUESTED,
    RunEvent.Kind.COMPLETED,
    RunEvent.Kind.STOPPED,
    RunEvent.Kind.FAILED,
    RunEvent.Kind.RESET,
)


def run_list(
    *, status: str = "", mode: str = "", strategy_id: int | None = None, search: str = "", include_trials: bool = True
) -> QuerySet[Run]:
    """Runs newest first, filtered; `search` matches the description or the strategy's name;
    `include_trials=False` leaves out Optimize trials (a grid study adds hundreds of runs).
    Each run comes with its version and strategy (one query for the whole page)."""
    runs = Run.objects.select_related("strategy_version__strategy")
    if not include_trials:
        runs = runs.filter(study__isnull=True)
    if status:
        runs = runs.filter(status=status)
    if mode:
        runs = runs.filter(mode=mode)
    if strategy_id:
        runs = runs.filter(strategy_version__strategy_id=strategy_id)
    search = (search or "").strip()
    if search:
        runs = runs.filter(Q(description__icontains=search) | Q(strategy_version__strategy__name__icontains=search))
    return runs.order_by("-created_at", "-id")


def run_detail(*, run_id: int) -> Run | None:
    return (
        Run.objects.select_related("strategy_version__strategy", "created_by", "copied_from")
        .filter(pk=run_id)
        .first()
    )


def run_timeline(*, run: Run) -> list[RunEvent]:
    """The run's lifecycle events, oldest first (config edits left out: they are not milestones)."""
    return list(run.events.filter(kind__in=TIMELINE_KINDS).select_related("actor").order_by("at", "id"))


def run_initial_tab(*, status: str) -> str:
    """The detail tab a run opens on (product.md §8)."""
    if status in (Status.NEW, Status.STARTING):
        return "configuration"
    if status == Status.ERROR:
        return "issues"
    return "performance"


@dataclass(frozen=True)
class RunAction:
    name: str  # start | kill | copy | reset | edit | orders | optimize
    label: str
    allowed: bool
    reason: str = ""  # why it is disabled, shown next to the button


def _role_missing(user, mode: str, *, needs_live_switch: bool) -> str:
    """Why `user` may not act on a run of `mode`, or "" when they may."""
    if mode == Mode.LIVE:
        if needs_live_switch and not settings.LIVE_TRADING_ENABLED:
            return "Live trading is disabled on this deployment"
        if not user.has_perm("runs.trade_live"):
            return "needs the Live trader role"
    elif not user.has_perm("runs.operate_run"):
        return "needs the Operator role"
    return ""


def run_actions(*, run: Run, user) -> list[RunAction]:
    """The detail panel's actions for this run and user, in display order (product.md §7).
    Actions that do not apply to the run's state or mode are left out; the ones that apply but
    cannot be used right now come back with `allowed=False` and the reason."""
    actions: list[RunAction] = []
    role = _role_missing(user, run.mode, needs_live_switch=False)
    if run.status == Status.NEW:
        reason = _role_missing(user, run.mode, needs_live_switch=True) or run_start_blocker(run=run) or ""
        actions.append(RunAction("start", "Start Run", not reason, reason))
    if run.status in ACTIVE_STATUSES:
        if run.kill_requested_at is not None and run.status == Status.RUNNING:
            actions.append(RunAction("kill", "Kill Run", False, "kill requested: the run is stopping"))
        else:
            actions.append(RunAction("kill", "Kill Run", not role, role))
    copy_reason = _role_missing(user, run.mode, needs_live_switch=True)
    actions.append(RunAction("copy", "Copy", not copy_reason, copy_reason))
    if run.mode != Mode.LIVE:
        if run.status in (Status.NEW,) + ACTIVE_STATUSES:
            reset_reason = "the run has not started" if run.status == Status.NEW else "stop the run first"
        else:
            reset_reason = role
        actions.append(RunAction("reset", "Reset", not reset_reason, reset_reason))
    edit_reason = "" if run.status == Status.NEW else "the config is read-only once started: use Copy"
    edit_reason = edit_reason or copy_reason
    actions.append(RunAction("edit", "Edit Config", not edit_reason, edit_reason))
    orders_reason = "" if run.status != Status.NEW else "available once the run has started"
    actions.append(RunAction("orders", "Download Orders", not orders_reason, orders_reason))
    if run.mode == Mode.BACKTEST:
        actions.append(RunAction("optimize", "Optimize", not role, role))
    return actions
