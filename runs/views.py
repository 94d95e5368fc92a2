"""The operator console's Runs page: the runs list, the run detail panel with its actions and
tabs, the New Run dialog and the orders CSV.

One view per page; htmx asks for a fragment of it by its target id (`HX-Target`), so a fragment
is always rendered by the same code and context as the full page. Every action checks the
user's role here and again in its service (which also audits), and answers an htmx request with
the re-rendered panel plus a toast (an `HX-Trigger` event), anything else with a redirect.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING, push_url, reswap, retarget, trigger_client_event

from issues.selectors import issue_count, issue_list, log_line_count, log_page
from issues.services import audit_record
from portfolio.exports import orders_csv_lines
from portfolio.selectors import (
    ORDER_STATE_GROUPS,
    equity_series,
    orders_recent,
    performance_summary,
    positions_open,
)
from runs.config import RunConfigError
from runs.forms import RunForm, config_from_data, mode_choices
from runs.models import Mode, Run, Status
from runs.selectors import ACTIVE_STATUSES, run_actions, run_detail, run_initial_tab, run_list, run_timeline
from runs.services import (
    RunActionError,
    run_copy,
    run_create,
    run_kill,
    run_reset,
    run_role_required,
    run_start,
    run_update_config,
)
from strategies.models import Strategy, StrategyVersion
from strategies.selectors import strategy_list, strategy_version_latest

TABS = {"configuration": "Configuration", "performance": "Performance", "issues": "Issues & Logs"}
LIST_PARAMS = ("status", "mode", "strategy", "q", "trials", "page")
PAGE_SIZE = 25
PAGE_TEMPLATE = "runs/runs_page.html"


# --- helpers -----------------------------------------------------------------------------------


def _toast(response: HttpResponse, level: str, message: str) -> HttpResponse:
    """Show `message` as a toast once htmx receives the response (app.js listens for it)."""
    return trigger_client_event(response, "toast", {"level": level, "message": message})


def _runs_changed(response: HttpResponse) -> HttpResponse:
    """Tell the runs list to refresh its rows (a run was added or changed state)."""
    return trigger_client_event(response, "runs-changed", {})


def _fragment_target(request) -> str | None:
    """The id htmx will swap, or None for a full page (a history restore wants the page)."""
    if request.htmx and not request.htmx.history_restore_request:
        return request.htmx.target
    return None


def _authorize(request, *, action: str, mode: str, run: Run | None = None) -> None:
    """Refuse (and audit) a user without the role for `mode`; the service checks again."""
    permission, role = run_role_required(mode)
    if not request.user.has_perm(permission):
        audit_record(
            actor=request.user, action=action, object_type="run", object_id=run.pk if run else "", allowed=False, detail={"mode": mode}
        )
        raise PermissionDenied(f"You need the {role} role to do this.")


def _refusal(request, message: str, *, status: int, run: Run | None = None) -> HttpResponse:
    """An action that was not allowed: a toast for htmx, the 403 page or a redirect otherwise."""
    if request.htmx:
        return _toast(HttpResponse(message, status=status, content_type="text/plain; charset=utf-8"), "error", message)
    if status == 403:
        return render(request, "403.html", {"message": message}, status=403)
    messages.error(request, message)
    return redirect(reverse("runs:detail", args=[run.pk]) if run else reverse("runs:list"))


def _get_run(run_id: int) -> Run:
    run = run_detail(run_id=run_id)
    if run is None:
        raise Http404(f"There is no run {run_id}.")
    return run


# --- runs list -----------------------------------------------------------------------------------


def _list_filters(params) -> dict:
    strategy = params.get("strategy", "")
    return {
        "status": params.get("status", "") if params.get("status") in Status.values else "",
        "mode": params.get("mode", "") if params.get("mode") in Mode.values else "",
        "strategy_id": int(strategy) if strategy.isdigit() else None,
        "search": params.get("q", "").strip()[:100],
        # Optimize trials are listed on their study's page; the runs list shows them on request.
        "include_trials": params.get("trials") == "show",
    }


def _list_context(request) -> dict:
    filters = _list_filters(request.GET)
    page = Paginator(run_list(**filters), PAGE_SIZE).get_page(request.GET.get("page"))
    list_query = urlencode([(key, request.GET[key]) for key in LIST_PARAMS if request.GET.get(key)])
    return {
        "filters": filters,
        "page": page,
        "runs": page.object_list,
        "any_active": any(run.status in ACTIVE_STATUSES for run in page.object_list),
        "list_query": list_query,
        "filter_query": urlencode([(key, request.GET[key]) for key in LIST_PARAMS if key != "page" and request.GET.get(key)]),
    }


def _page_context(request) -> dict:
    """The whole Runs page around the list: the filters' choices and the New Run button."""
    return {
        **_list_context(request),
        "status_choices": Status.choices,
        "mode_choices": Mode.choices,
        "strategies": strategy_list(),
        "can_create": request.user.has_perm("runs.operate_run") or request.user.has_perm("runs.trade_live"),
    }


@login_required
@require_GET
def runs_page(request):
    target = _fragment_target(request)
    if target in ("run-rows", "run-list"):
        return render(request, f"{PAGE_TEMPLATE}#{target}", _list_context(request))
    return render(request, PAGE_TEMPLATE, _page_context(request))


# --- run detail ----------------------------------------------------------------------------------


def _configuration_context(run: Run, *, can_edit: bool, editing: bool, form: RunForm | None) -> dict:
    editing = editing and can_edit
    form = form or RunForm(
        version=run.strategy_version,
        mode=run.mode,
        description=run.description,
        config=run.config,
        editable=editing,
        id_prefix="edit" if editing else "view",
    )
    return {"form": form, "editing": editing}


def _performance_context(request, run: Run) -> dict:
    group = request.GET.get("orders", "")
    group = group if group in ORDER_STATE_GROUPS else ""
    return {
        "summary": performance_summary(run=run),
        "positions": list(positions_open(run_id=run.pk)),
        "orders": orders_recent(run_id=run.pk, group=group),
        "order_group": group,
        "order_groups": [(key, label) for key, (label, _states) in ORDER_STATE_GROUPS.items()],
        "chart": equity_series(run_id=run.pk).as_chart_data(),
        "chart_script_id": f"chart-data-{run.pk}",
        "timeline": run_timeline(run=run),
    }


def _issues_context(request, run: Run) -> dict:
    before = request.GET.get("before", "")
    return {
        "issues": issue_list(run_id=run.pk),
        "log": log_page(run_id=run.pk, before=int(before) if before.isdigit() else None),
        "log_lines": log_line_count(run_id=run.pk),
        "log_open": request.GET.get("log_open") == "1",
    }


def _header_context(request, run: Run) -> dict:
    actions = run_actions(run=run, user=request.user)
    return {
        "run": run,
        "active": run.status in ACTIVE_STATUSES,
        "actions": actions,
        "action": {action.name: action for action in actions},
    }


def _panel_context(request, run: Run, *, tab: str | None = None, editing: bool = False, form: RunForm | None = None) -> dict:
    """The header, the tabs and the content of the one tab shown."""
    tab = tab if tab in TABS else run_initial_tab(status=run.status)
    context = {**_header_context(request, run), "tab": tab, "tabs": TABS, "issue_count": issue_count(run_id=run.pk)}
    if tab == "configuration":
        context.update(_configuration_context(run, can_edit=context["action"]["edit"].allowed, editing=editing, form=form))
    elif tab == "performance":
        context.update(_performance_context(request, run))
    else:
        context.update(_issues_context(request, run))
    return context


def _render_panel(request, run: Run, **kwargs) -> HttpResponse:
    return render(request, "runs/_run_panel.html", _panel_context(request, run, **kwargs))


def _tab_after_status_change(*, old_status: str, new_status: str, current_tab: str) -> str:
    """A run in error opens Issues & Logs; otherwise a panel still on the tab its old status
    opened on follows to the new status's tab, and one the operator moved stays put."""
    if new_status == Status.ERROR:
        return "issues"
    if current_tab not in TABS or current_tab == run_initial_tab(status=old_status):
        return run_initial_tab(status=new_status)
    return current_tab


@login_required
@require_GET
def run_page(request, run_id: int):
    run = _get_run(run_id)
    target = _fragment_target(request)
    tab = request.GET.get("tab", "")
    if target == "run-header":
        # The status poll: the client says which status it shows.
        known = request.GET.get("status", "")
        if known != run.status:
            tab = _tab_after_status_change(old_status=known, new_status=run.status, current_tab=tab)
            response = reswap(retarget(_render_panel(request, run, tab=tab), "#run-panel"), "outerHTML")
            return _runs_changed(response)
        response = render(request, "runs/_run_header.html", _header_context(request, run))
        if run.status not in ACTIVE_STATUSES:
            response.status_code = HTMX_STOP_POLLING
        return response
    if target == "performance":
        # The ten-second refresh while the run is active; 286 tells htmx to stop polling.
        context = {"run": run, "active": run.status in ACTIVE_STATUSES, **_performance_context(request, run)}
        response = render(request, "runs/_performance.html#performance-body", context)
        if run.status not in ACTIVE_STATUSES:
            response.status_code = HTMX_STOP_POLLING
        return response
    if target == "orders-table":
        return render(request, "runs/_performance.html#orders-table", {"run": run, **_performance_context(request, run)})
    if target == "log-older":
        return render(request, "runs/_issues_logs.html#log-entries", {"run": run, **_issues_context(request, run)})
    if target in ("run-body", "issues-logs"):
        context = _panel_context(request, run, tab=tab, editing=request.GET.get("edit") == "1")
        template = "runs/_run_panel.html#run-body" if target == "run-body" else "runs/_issues_logs.html"
        return render(request, template, context)
    if target == "run-panel":
        return _render_panel(request, run, tab=tab, editing=request.GET.get("edit") == "1")
    context = {**_page_context(request), **_panel_context(request, run, tab=tab, editing=request.GET.get("edit") == "1")}
    context["selected_run"] = run
    return render(request, PAGE_TEMPLATE, context)


# --- New Run dialog ------------------------------------------------------------------------------


def _version_for(params) -> StrategyVersion | None:
    """The version the form is for: `version` as given, unless `strategy` names another
    strategy, whose latest version it then is."""
    version_id, strategy_id = params.get("version", ""), params.get("strategy", "")
    version = None
    if version_id.isdigit():
        version = StrategyVersion.objects.select_related("strategy").filter(pk=int(version_id)).first()
    if strategy_id.isdigit() and (version is None or version.strategy_id != int(strategy_id)):
        version = strategy_version_latest(strategy=Strategy.objects.filter(pk=int(strategy_id)).first())
    return version


def _new_run_context(request, *, version, form: RunForm | None) -> dict:
    strategies = [strategy for strategy in strategy_list() if strategy.latest_version_number]
    if version is None and strategies and form is None:
        version = strategy_version_latest(strategy=strategies[0])
    if form is None and version is not None:
        params = request.GET
        modes = [value for value, _label in mode_choices(user=request.user)]
        mode = params.get("mode") if params.get("mode") in modes else Mode.BACKTEST
        same_strategy = params.get("version", "").isdigit() and int(params["version"]) == version.pk
        config = config_from_data(params, version=version, mode=mode) if params.get("form") == "1" else {}
        if not same_strategy:
            config.pop("strategy", None)  # another strategy's parameters mean nothing here
        form = RunForm(version=version, mode=mode, description=params.get("description", ""), config=config, id_prefix="new")
    return {
        "form": form,
        "version": version,
        "form_strategies": strategies,
        "form_modes": mode_choices(user=request.user),
        "form_id": "run-form-new",
        "form_action": reverse("runs:new"),
    }


@login_required
@require_http_methods(["GET", "POST"])
def run_new(request):
    if request.method == "POST":
        return _run_create(request)
    if not (request.user.has_perm("runs.operate_run") or request.user.has_perm("runs.trade_live")):
        audit_record(actor=request.user, action="run.create", object_type="run", allowed=False, detail={"form": "new"})
        return _refusal(request, "You need the Operator role to create runs.", status=403)
    context = _new_run_context(request, version=_version_for(request.GET), form=None)
    target = _fragment_target(request)
    if target == "run-form-new":
        return render(request, "runs/_run_form.html", context)
    if target == "dialog-slot":
        return render(request, "runs/_new_run_dialog.html", context)
    return render(request, PAGE_TEMPLATE, {**_page_context(request), "new_run": context})


def _run_create(request) -> HttpResponse:
    data = request.POST
    version = _version_for(data)
    if version is None:
        return _refusal(request, "Choose a strategy with a published version.", status=400)
    mode = data.get("mode", Mode.BACKTEST)
    description = data.get("description", "")
    config = config_from_data(data, version=version, mode=mode)
    try:
        _authorize(request, action="run.create", mode=mode)
        run = run_create(user=request.user, strategy_version=version, mode=mode, description=description, config=config)
    except PermissionDenied as exc:
        return _refusal(request, str(exc), status=403)
    except RunConfigError as exc:
        form = RunForm(version=version, mode=mode, description=description, config=config, errors=exc.errors, id_prefix="new")
        context = _new_run_context(request, version=version, form=form)
        if request.htmx:
            return render(request, "runs/_run_form.html", context, status=422)
        return render(request, PAGE_TEMPLATE, {**_page_context(request), "new_run": context}, status=422)
    message = f"Run {run.pk} created. Start it when ready."
    if not request.htmx:
        messages.success(request, message)
        return redirect("runs:detail", run.pk)
    response = push_url(reswap(retarget(_render_panel(request, run), "#run-panel"), "outerHTML"), reverse("runs:detail", args=[run.pk]))
    trigger_client_event(response, "dialog-close", {})
    return _toast(_runs_changed(response), "success", message)


# --- actions -------------------------------------------------------------------------------------


def _action_done(request, run: Run, message: str, *, tab: str | None = None, editing: bool = False, new_url: bool = False) -> HttpResponse:
    run = _get_run(run.pk)
    if not request.htmx:
        messages.success(request, message)
        url = reverse("runs:detail", args=[run.pk])
        return redirect(url + ("?tab=configuration&edit=1" if editing else ""))
    response = _render_panel(request, run, tab=tab, editing=editing)
    retarget(reswap(response, "outerHTML"), "#run-panel")
    if new_url:
        push_url(response, reverse("runs:detail", args=[run.pk]))
    return _toast(_runs_changed(response), "success", message)


def _run_action(action: str):
    """Wrap an action view: load the run, check the role for its mode, and turn the services'
    refusals into a 403 (permission) or 409 (state) with the message."""

    def decorate(view):
        @login_required
        @require_POST
        def wrapped(request, run_id: int):
            run = _get_run(run_id)
            try:
                _authorize(request, action=action, mode=run.mode, run=run)
                return view(request, run)
            except PermissionDenied as exc:
                return _refusal(request, str(exc) or "You are not allowed to do this.", status=403, run=run)
            except RunActionError as exc:
                return _refusal(request, str(exc), status=409, run=run)

        wrapped.__name__ = view.__name__
        wrapped.__doc__ = view.__doc__
        return wrapped

    return decorate


@_run_action("run.start")
def run_start_action(request, run: Run):
    run = run_start(run=run, user=request.user)
    return _action_done(request, run, f"Run {run.pk} is starting: waiting for a worker.")


@_run_action("run.kill")
def run_kill_action(request, run: Run):
    run = run_kill(run=run, user=request.user)
    if run.status == Status.STOPPED:
        return _action_done(request, run, f"Run {run.pk} stopped before it began.")
    return _action_done(request, run, f"Kill requested: run {run.pk} is stopping.")


@_run_action("run.copy")
def run_copy_action(request, run: Run):
    try:
        copy = run_copy(run=run, user=request.user)
    except RunConfigError as exc:
        raise RunActionError("Cannot copy: " + "; ".join(exc.errors.values())) from exc
    return _action_done(request, copy, f"Run {copy.pk} is a copy of run {run.pk}: edit its config, then start it.", tab="configuration", editing=True, new_url=True)


@_run_action("run.reset")
def run_reset_action(request, run: Run):
    run = run_reset(run=run, user=request.user)
    return _action_done(request, run, f"Run {run.pk} was reset: its results are cleared.")


@_run_action("run.update_config")
def run_config_action(request, run: Run):
    data = request.POST
    config = config_from_data(data, version=run.strategy_version, mode=run.mode)
    description = data.get("description", "")
    try:
        run = run_update_config(run=run, user=request.user, config=config, description=description)
    except RunConfigError as exc:
        form = RunForm(
            version=run.strategy_version,
            mode=run.mode,
            description=description,
            config=config,
            errors=exc.errors,
            editable=True,
            id_prefix="edit",
        )
        if request.htmx:
            context = {
                "form": form,
                "version": run.strategy_version,
                "run": run,
                "form_id": "run-form-edit",
                "form_action": reverse("runs:config", args=[run.pk]),
            }
            return render(request, "runs/_run_form.html", context, status=422)
        context = {**_page_context(request), **_panel_context(request, run, tab="configuration", editing=True, form=form)}
        return render(request, PAGE_TEMPLATE, {**context, "selected_run": run}, status=422)
    return _action_done(request, run, "Config saved.", tab="configuration")


# --- orders CSV ----------------------------------------------------------------------------------


@login_required
@require_GET
def run_orders_csv(request, run_id: int):
    run = _get_run(run_id)
    if run.status == Status.NEW:
        return _refusal(request, "Download Orders is available once the run has started.", status=409, run=run)
    response = StreamingHttpResponse(orders_csv_lines(run_id=run.pk), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-orders.csv"'
    return response
