"""The Optimize pages (product.md §11): the studies list, the Create Study dialog (with its live
trial count), a study's progress and results, and Kill. As in runs/views.py, htmx asks for a
fragment by its target id, and every action checks the role here and again in its service."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING, HttpResponseClientRedirect, trigger_client_event

from issues.services import audit_record
from runs.models import Mode, Run, StudyStatus
from runs.services import RunActionError
from runs.studies import GRID, MAX_TRIALS, SWEEP
from runs.study_selectors import (
    METRIC_LABELS,
    PERCENT_METRICS,
    study_base_candidates,
    study_detail,
    study_list,
    study_progress,
    study_trial_table,
)
from runs.study_services import METRICS, StudyError, study_create, study_kill, study_trials_plan
from strategies.schema import parameters_from_schema

LIST_TEMPLATE = "optimize/studies_page.html"
CHOICE_KINDS = ("boolean", "choice", "bar_frequency")


def _toast(response: HttpResponse, level: str, message: str) -> HttpResponse:
    return trigger_client_event(response, "toast", {"level": level, "message": message})


def _fragment_target(request) -> str | None:
    if request.htmx and not request.htmx.history_restore_request:
        return request.htmx.target
    return None


def _refusal(request, message: str, *, status: int) -> HttpResponse:
    if request.htmx:
        return _toast(HttpResponse(message, status=status, content_type="text/plain; charset=utf-8"), "error", message)
    if status == 403:
        return render(request, "403.html", {"message": message}, status=403)
    messages.error(request, message)
    return redirect("optimize:list")


def _can_operate(user) -> bool:
    return user.has_perm("runs.operate_run")


def metric_display(name: str, value) -> str:
    if value is None:
        return "–"
    if name == "trades":
        return str(value)
    if name in PERCENT_METRICS:
        return f"{value * 100:.2f} %"
    if name == "final_value":
        return f"{value:,.2f}"
    return f"{value:.2f}"


# --- studies list --------------------------------------------------------------------------------


def _list_context(request) -> dict:
    studies = list(study_list()[:200])
    for study in studies:
        study.progress_percent = study_progress(study)
        study.objective_label = METRIC_LABELS.get(study.objective_metric, study.objective_metric)
    return {"studies": studies, "any_running": any(study.status == StudyStatus.RUNNING for study in studies), "can_create": _can_operate(request.user)}


@login_required
@require_GET
def studies_page(request):
    context = _list_context(request)
    if _fragment_target(request) == "study-rows":
        response = render(request, "optimize/studies_page.html#study-rows", context)
        if not context["any_running"]:
            response.status_code = HTMX_STOP_POLLING
        return response
    return render(request, LIST_TEMPLATE, context)


# --- Create Study dialog ---------------------------------------------------------------------------


def _base_run(value) -> Run | None:
    value = str(value or "")
    if not value.isdigit():
        return None
    return Run.objects.select_related("strategy_version__strategy").filter(pk=int(value)).first()


def _space_spec_from_rows(data, parameters) -> dict:
    spec = {}
    for parameter in parameters:
        if data.get(f"vary_{parameter.name}") != "on":
            continue
        if parameter.kind in CHOICE_KINDS:
            spec[parameter.name] = data.getlist(f"values_{parameter.name}")
        else:
            spec[parameter.name] = data.get(f"values_{parameter.name}", "")
    return spec


def _space_spec(data, parameters, *, input_mode: str) -> tuple[dict, str]:
    """The search space as posted, from the JSON box or from the rows; (spec, JSON error)."""
    if input_mode != "json":
        return _space_spec_from_rows(data, parameters), ""
    text = data.get("space_json", "").strip() or "{}"
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    if not isinstance(spec, dict):
        return {}, 'must be an object of parameter to values, e.g. {"fast": [5, 10], "slow": "20:100:20"}'
    return spec, ""


def _written(values) -> str:
    return ", ".join(str(value) for value in values) if isinstance(values, list) else str(values)


def _rows(parameters, base_values: dict, spec: dict, errors: dict) -> list[dict]:
    rows = []
    for parameter in parameters:
        value = spec.get(parameter.name)
        choices = parameter.choices or parameter.frequency_choices or ((True, False) if parameter.kind == "boolean" else ())
        chosen = [str(item).lower() if isinstance(item, bool) else str(item) for item in (value if isinstance(value, list) else [])]
        rows.append({
            "parameter": parameter,
            "on": parameter.name in spec,
            "text": _written(value) if value is not None and parameter.kind not in CHOICE_KINDS else "",
            "choices": [{"value": str(choice).lower() if isinstance(choice, bool) else str(choice), "checked": (str(choice).lower() if isinstance(choice, bool) else str(choice)) in chosen} for choice in choices],
            "base": base_values.get(parameter.name),
            "pinned": parameter.pinned_frequency is not None,
            "numeric": parameter.json_type in ("integer", "number"),
            "error": errors.get(parameter.name, ""),
        })
    return rows


def _form_context(request, data, *, errors: dict | None = None) -> dict:
    """Everything the Create Study form shows, from the request's values (GET on first open and
    re-renders, POST on errors)."""
    errors = dict(errors or {})
    base = _base_run(data.get("base"))
    input_mode = data.get("input") if data.get("input") in ("form", "json") else "form"
    previous_mode = data.get("shown") if data.get("shown") in ("form", "json") else input_mode
    mode = data.get("mode") if data.get("mode") in (SWEEP, GRID) else SWEEP
    context = {
        "base": base,
        "candidates": study_base_candidates(),
        "description": data.get("description", ""),
        "mode": mode,
        "input_mode": input_mode,
        "objective_metric": data.get("objective_metric") if data.get("objective_metric") in METRICS else "sharpe",
        "objective_direction": data.get("objective_direction") if data.get("objective_direction") in ("max", "min") else "max",
        "metric_choices": [(name, METRIC_LABELS[name]) for name in METRICS],
        "errors": errors,
        "max_trials": MAX_TRIALS,
        "rows": [],
        "space_json": "",
    }
    if base is None or base.mode != Mode.BACKTEST:
        if data.get("base"):
            errors.setdefault("base_run", "pick a Backtest run as the base")
        return context
    parameters = parameters_from_schema(base.strategy_version.config_schema)
    # The rows and the JSON box show the same space: the one that was on screen is the truth.
    spec, json_error = _space_spec(data, parameters, input_mode=previous_mode)
    if json_error:
        errors.setdefault("space_json", json_error)
        spec = _space_spec_from_rows(data, parameters)
    context["rows"] = _rows(parameters, base.config.get("strategy") or {}, spec, errors)
    context["space_json"] = json.dumps(spec, indent=2) if spec else ""
    if input_mode == "json" and previous_mode == "json" and not json_error:
        context["space_json"] = data.get("space_json", "")
    context["trials"] = _trial_preview(base, spec, mode) if not json_error else {"count": None, "message": json_error}
    return context


def _trial_preview(base: Run, spec: dict, mode: str) -> dict:
    try:
        _space, trials = study_trials_plan(base_run=base, space_spec=spec, mode=mode)
    except StudyError as exc:
        return {"count": None, "message": "; ".join(f"{key}: {message}" if key not in ("space", "mode") else message for key, message in exc.errors.items())}
    return {"count": len(trials), "message": ""}


@login_required
@require_http_methods(["GET", "POST"])
def study_new(request):
    if not _can_operate(request.user):
        audit_record(actor=request.user, action="study.create", object_type="study", allowed=False, detail={"form": "new"})
        return _refusal(request, "You need the Operator role to create studies.", status=403)
    if request.method == "POST":
        return _study_create(request)
    context = _form_context(request, request.GET)
    target = _fragment_target(request)
    if target == "trial-count":
        return render(request, "optimize/_study_form.html#trial-count", context)
    if target == "study-form":
        return render(request, "optimize/_study_form.html", context)
    if target == "dialog-slot":
        return render(request, "optimize/_study_dialog.html", context)
    return render(request, LIST_TEMPLATE, {**_list_context(request), "new_study": context})


def _study_create(request) -> HttpResponse:
    data = request.POST
    base = _base_run(data.get("base"))
    errors: dict = {}
    if base is None:
        errors["base_run"] = "pick the Backtest run the study varies"
    else:
        parameters = parameters_from_schema(base.strategy_version.config_schema)
        input_mode = data.get("input") if data.get("input") in ("form", "json") else "form"
        spec, json_error = _space_spec(data, parameters, input_mode=input_mode)
        if json_error:
            errors["space_json"] = json_error
        else:
            try:
                study = study_create(
                    user=request.user,
                    base_run=base,
                    description=data.get("description", ""),
                    space_spec=spec,
                    mode=data.get("mode", SWEEP),
                    objective_metric=data.get("objective_metric", "sharpe"),
                    objective_direction=data.get("objective_direction", "max"),
                )
            except PermissionDenied as exc:
                return _refusal(request, str(exc), status=403)
            except StudyError as exc:
                errors = exc.errors
            else:
                message = f"Study {study.pk} created: {study.trial_count} trials queued for the workers."
                messages.success(request, message)
                url = reverse("optimize:detail", args=[study.pk])
                return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    form_data = data.copy()
    form_data["shown"] = data.get("input", "form")
    context = _form_context(request, form_data, errors=errors)
    if request.htmx:
        return render(request, "optimize/_study_form.html", context, status=422)
    return render(request, LIST_TEMPLATE, {**_list_context(request), "new_study": context}, status=422)


# --- study page --------------------------------------------------------------------------------


def _get_study(study_id: int):
    study = study_detail(study_id=study_id)
    if study is None:
        raise Http404(f"There is no study {study_id}.")
    study.progress_percent = study_progress(study)
    return study


def _study_context(request, study) -> dict:
    sort = request.GET.get("sort", "")
    # Trials in creation order until a column is picked; a picked metric sorts best-first.
    descending = request.GET.get("dir", "desc" if sort else "asc") == "desc"
    table = study_trial_table(study=study, sort=sort, descending=descending)
    for row in table.rows:
        row.cells = [{"name": name, "value": row.metrics.get(name), "text": metric_display(name, row.metrics.get(name))} for name in table.columns]
    if table.heatmap:
        for heat_row in table.heatmap["rows"]:
            for cell in heat_row["cells"]:
                cell["text"] = metric_display(study.objective_metric, cell["value"])
    headers = [{"name": name, "label": name, "parameter": True} for name in table.parameters]
    headers += [{"name": name, "label": METRIC_LABELS[name], "parameter": False} for name in table.columns]
    for header in headers:
        header["sorted"] = header["name"] == table.sort
        # A first click sorts metrics best-first (descending) and parameters ascending.
        header["next_dir"] = ("asc" if table.descending else "desc") if header["sorted"] else ("asc" if header["parameter"] else "desc")
    return {
        "study": study,
        "table": table,
        "headers": headers,
        "metric_labels": METRIC_LABELS,
        "objective_label": METRIC_LABELS.get(study.objective_metric, study.objective_metric),
        "objective_text": metric_display(study.objective_metric, table.best.metrics.get(study.objective_metric)) if table.best else "",
        "can_operate": _can_operate(request.user),
        "running": study.status == StudyStatus.RUNNING,
    }


@login_required
@require_GET
def study_page(request, study_id: int):
    study = _get_study(study_id)
    context = _study_context(request, study)
    if _fragment_target(request) == "study-body":
        response = render(request, "optimize/study_page.html#study-body", context)
        if request.GET.get("poll") == "1" and not context["running"]:
            response.status_code = HTMX_STOP_POLLING
        return response
    return render(request, "optimize/study_page.html", context)


@login_required
@require_POST
def study_kill_action(request, study_id: int):
    study = _get_study(study_id)
    if not _can_operate(request.user):
        audit_record(actor=request.user, action="study.kill", object_type="study", object_id=study.pk, allowed=False)
        return _refusal(request, "You need the Operator role to do this.", status=403)
    try:
        study_kill(study=study, user=request.user)
    except PermissionDenied as exc:
        return _refusal(request, str(exc), status=403)
    except RunActionError as exc:
        if request.htmx:
            return _refusal(request, str(exc), status=409)
        messages.error(request, str(exc))
        return redirect("optimize:detail", study.pk)
    message = f"Study {study.pk} stopped: its unfinished trials are being killed."
    if request.htmx:
        study = _get_study(study_id)
        return _toast(render(request, "optimize/study_page.html#study-body", _study_context(request, study)), "success", message)
    messages.success(request, message)
    return redirect("optimize:detail", study.pk)
