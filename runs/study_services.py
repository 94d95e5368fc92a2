"""Optimize study lifecycle (product.md §11): create (every trial validated first, nothing
half-created), start (trials fanned out over the workers on the `studies` queue as a Celery
group), kill, and the compare-and-set that finishes a study when its last trial finishes."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from issues.services import audit_record
from runs.config import run_config_check
from runs.execution import run_execute
from runs.models import FINISHED_STATUSES, Mode, Run, RunEvent, Status, Study, StudyStatus
from runs.services import RunActionError, run_kill
from runs.studies import SWEEP, SearchSpaceError, search_space_parse, trials_generate
from strategies.schema import parameters_from_schema

STUDY_QUEUE = "studies"
METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "win_rate", "profit_factor", "trades", "exposure", "final_value")


class StudyError(Exception):
    """A study that cannot be created or acted on: `errors` maps a field ("description",
    "base_run", "objective", a parameter name, or "space") to a message with the fix."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))


def _authorize(*, user, action: str, study: Study | None) -> None:
    """`user=None` is the system (the CLI). Trials are Backtest runs: the Operator role."""
    if user is None or (user.is_active and user.has_perm("runs.operate_run")):
        return
    audit_record(actor=user, action=action, object_type="study", object_id=study.pk if study else "", allowed=False)
    raise PermissionDenied("You need the Operator role to do this.")


def study_trials_plan(*, base_run: Run, space_spec: dict, mode: str) -> tuple[dict, list]:
    """The typed search space and the trials a study of `base_run` would run, without storing
    anything (the dialog's live trial count uses it too). Raises StudyError."""
    if base_run.mode != Mode.BACKTEST:
        raise StudyError({"base_run": f"run {base_run.pk} is a {base_run.get_mode_display()} run: a study's base must be a Backtest run"})
    parameters = parameters_from_schema(base_run.strategy_version.config_schema)
    try:
        space = search_space_parse(parameters=parameters, spec=space_spec)
        base_values = base_run.config.get("strategy") or {}
        trials = trials_generate(base_values=base_values, space=space, mode=mode)
    except SearchSpaceError as exc:
        raise StudyError(exc.errors) from None
    return space, trials


def trial_config(*, base_run: Run, overrides: dict) -> dict:
    config = {section: dict(base_run.config.get(section) or {}) for section in ("environment", "strategy", "core")}
    config["strategy"].update(overrides)
    return config


def _trial_configs_check(*, base_run: Run, trials: list) -> tuple[list[dict], dict[str, str]]:
    """Every trial config through run_config_check: the cleaned configs, and the first problem
    of each parameter value, keyed by parameter, so the dialog shows it on that row."""
    errors: dict[str, str] = {}
    configs: list[dict] = []
    schema = base_run.strategy_version.config_schema
    for trial in trials:
        check = run_config_check(config=trial_config(base_run=base_run, overrides=trial.overrides), mode=Mode.BACKTEST, schema=schema)
        configs.append(check.config)
        for key, message in check.errors.items():
            section, _, name = key.partition(".")
            field = name if section == "strategy" and name in trial.overrides else "base_run"
            where = f"value {trial.overrides[name]!r}: " if field != "base_run" else f"the base run's {key}: "
            errors.setdefault(field, where + message)
        for key in check.missing:
            errors.setdefault("base_run", f"the base run's config is incomplete ({key}): complete it or pick another base run")
    return configs, errors


def study_create(
    *, user, base_run: Run, description: str, space_spec: dict, mode: str = SWEEP, objective_metric: str = "sharpe", objective_direction: str = "max", start: bool = True
) -> Study:
    """Create a study and its trials (Backtest runs with `study` set). Every trial config is
    validated before anything is stored; with `start`, the trials are started and handed to the
    workers once the transaction commits."""
    _authorize(user=user, action="study.create", study=None)
    errors: dict[str, str] = {}
    description = (description or "").strip()
    if not description:
        errors["description"] = "required: say what this study is for"
    if objective_metric not in METRICS:
        errors["objective"] = f"unknown metric {objective_metric!r}: choose one of {', '.join(METRICS)}"
    if objective_direction not in Study.Direction.values:
        errors["objective"] = "direction must be max or min"
    trials, configs = [], []
    try:
        space, trials = study_trials_plan(base_run=base_run, space_spec=space_spec, mode=mode)
    except StudyError as exc:
        errors.update(exc.errors)
    if trials:
        configs, trial_errors = _trial_configs_check(base_run=base_run, trials=trials)
        errors.update(trial_errors)
    if errors:
        raise StudyError(errors)
    with transaction.atomic():
        study = Study.objects.create(
            description=description[:200],
            base_run=base_run,
            strategy_version=base_run.strategy_version,
            search_space=space,
            search_mode=mode,
            objective_metric=objective_metric,
            objective_direction=objective_direction,
            trial_count=len(trials),
            created_by=user if user is not None and user.is_authenticated else None,
        )
        # The trials in one statement: configs were checked above, and a study's audit record
        # stands for its trials (a hundred runs' worth of single-run bookkeeping cost seconds).
        actor = user if user is not None and user.is_authenticated else None
        trial_runs = Run.objects.bulk_create(
            Run(
                description=f"Study {study.pk} trial {number}: {trial.label}"[:200],
                strategy_version=base_run.strategy_version,
                mode=Mode.BACKTEST,
                config=config,
                created_by=actor,
                copied_from=base_run,
                study=study,
            )
            for number, (trial, config) in enumerate(zip(trials, configs, strict=True), start=1)
        )
        RunEvent.objects.bulk_create(
            RunEvent(run=run, kind=RunEvent.Kind.CREATED, actor=actor, note=f"trial of study {study.pk}") for run in trial_runs
        )
        audit_record(actor=user, action="study.create", object_type="study", object_id=study.pk, allowed=True, detail={"trials": len(trials), "mode": mode})
        if start:
            study_start(study=study, user=user)
        return study


def study_start(*, study: Study, user, enqueue: bool = True) -> Study:
    """new → running: every trial new → starting, then (on commit) one Celery group of
    execute-trial tasks on the `studies` queue. `enqueue=False` is for callers that run the
    trials in their own process (the CLI's --inline)."""
    _authorize(user=user, action="study.start", study=study)
    with transaction.atomic():
        if not Study.objects.filter(pk=study.pk, status=StudyStatus.NEW).update(status=StudyStatus.RUNNING, started_at=timezone.now()):
            study.refresh_from_db()
            raise RunActionError(f"Cannot start: the study is {study.status}.")
        # Every trial new → starting at once (one compare-and-set for all of them).
        run_ids = list(Run.objects.select_for_update().filter(study_id=study.pk, status=Status.NEW).order_by("pk").values_list("pk", flat=True))
        Run.objects.filter(pk__in=run_ids, status=Status.NEW).update(status=Status.STARTING, start_requested_at=timezone.now(), progress=0)
        actor = user if user is not None and user.is_authenticated else None
        RunEvent.objects.bulk_create(RunEvent(run_id=run_id, kind=RunEvent.Kind.START_REQUESTED, actor=actor) for run_id in run_ids)
        audit_record(actor=user, action="study.start", object_type="study", object_id=study.pk, allowed=True, detail={"trials": len(run_ids)})
        if enqueue:
            study_id = study.pk
            transaction.on_commit(lambda: _enqueue_trials(study_id=study_id, run_ids=run_ids))
        study.refresh_from_db()
        return study


def _enqueue_trials(*, study_id: int, run_ids: list[int]) -> None:
    from celery import group

    from runs.tasks import execute_trial

    group(execute_trial.si(run_id, study_id).set(queue=STUDY_QUEUE) for run_id in run_ids).apply_async()


def study_trial_execute(*, run_id: int, study_id: int) -> str | None:
    """What the execute-trial task does: run the trial (idempotent, as run_execute is), then
    finish the study if that was its last unfinished trial."""
    status = run_execute(run_id=run_id)
    study_finish_if_done(study_id=study_id)
    return status


def study_finish_if_done(*, study_id: int) -> bool:
    """running → complete once no trial is unfinished; one UPDATE, so two trials finishing
    together finish the study once (each calls this after its own trial's commit, so the last
    one always sees every trial finished). A failed trial does not fail the study; a study
    all of whose trials failed ends in error."""
    unfinished = Run.objects.filter(study_id=OuterRef("pk")).exclude(status__in=FINISHED_STATUSES)
    succeeded = Run.objects.filter(study_id=OuterRef("pk")).exclude(status=Status.ERROR)
    finishable = Study.objects.filter(pk=study_id, status=StudyStatus.RUNNING).exclude(Exists(unfinished))
    now = timezone.now()
    if finishable.filter(Exists(succeeded)).update(status=StudyStatus.COMPLETE, finished_at=now):
        return True
    return bool(finishable.update(status=StudyStatus.ERROR, finished_at=now))


def study_kill(*, study: Study, user) -> Study:
    """Stop a running study: → stopped, and every trial still starting or running is killed
    (starting ones stop at once; running ones at their next bar). Finished trials are kept."""
    _authorize(user=user, action="study.kill", study=study)
    with transaction.atomic():
        now = timezone.now()
        if not Study.objects.filter(pk=study.pk, status=StudyStatus.RUNNING).update(status=StudyStatus.STOPPED, kill_requested_at=now, finished_at=now):
            study.refresh_from_db()
            raise RunActionError(f"Cannot kill: the study is {study.status}.")
        for run in Run.objects.filter(study_id=study.pk, status__in=(Status.STARTING, Status.RUNNING), kill_requested_at__isnull=True).select_related("strategy_version"):
            try:
                run_kill(run=run, user=user)
            except RunActionError:  # it finished between the query and the kill
                pass
        audit_record(actor=user, action="study.kill", object_type="study", object_id=study.pk, allowed=True)
        study.refresh_from_db()
        return study
