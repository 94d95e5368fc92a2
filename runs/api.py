"""The runs part of the REST API (/api/v1/runs/... and /api/v1/studies/...): the same selectors,
services and role checks as the console's Runs and Optimize pages (runs/views.py,
runs/study_views.py), answering JSON.

Reading needs a login (any role); creating and acting on a run needs the Operator role, or the
Live trader role for a Live run; studies need the Operator role. Refusals are audited (here for
the role, in the service again).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from config.api import IDEMPOTENCY_PARAMETER, ApiError, ApiPagination, ApiView, error_responses, paginated
from issues.models import Issue, LogEntry
from issues.selectors import issue_list
from issues.services import audit_record
from portfolio.exports import orders_csv_lines
from portfolio.models import Order, Position
from portfolio.selectors import CHART_MAX_POINTS, ORDER_STATE_GROUPS, equity_series, performance_summary, positions_open
from runs.config import RunConfigError
from runs.models import Mode, Run, Status, Study
from runs.selectors import run_actions, run_detail, run_list, run_timeline
from runs.services import (
    run_copy,
    run_create,
    run_kill,
    run_reset,
    run_role_required,
    run_start,
    run_start_blocker,
    run_update_config,
)
from runs.study_selectors import study_detail, study_list, study_progress, study_trial_table
from runs.study_services import METRICS, StudyError, study_create, study_kill
from strategies.models import Strategy, StrategyVersion
from strategies.selectors import strategy_version_latest

EQUITY_MIN_POINTS = 4  # downsample keeps the first, the last and one bucket's min and max
EQUITY_MAX_POINTS = 20000


def _require_role(user, *, action: str, mode: str, run: Run | None = None) -> None:
    """The console's check before an action: refuse (and audit) a user without the mode's role."""
    permission, role = run_role_required(mode)
    if not user.has_perm(permission):
        audit_record(actor=user, action=action, object_type="run", object_id=run.pk if run else "", allowed=False, detail={"mode": mode, "via": "api"})
        raise PermissionDenied(f"You need the {role} role to do this.")


def _get_run(run_id: int) -> Run:
    run = run_detail(run_id=run_id)
    if run is None:
        raise Http404(f"There is no run {run_id}.")
    return run


# --- serializers ------------------------------------------------------------------------------------


class RunConfigSerializer(serializers.Serializer):
    environment = serializers.DictField(
        required=False, help_text='Backtest: {"start": "2017-01-03", "end": "2017-03-31"}; Paper: {feed, speed, replay_start}; Live: {broker_account}.'
    )
    strategy = serializers.DictField(required=False, help_text="The strategy's parameters, as its version's config_schema describes.")
    core = serializers.DictField(required=False, help_text="Platform settings: starting cash, commission, slippage ...")


class RunActionSerializer(serializers.Serializer):
    name = serializers.ChoiceField(choices=["start", "kill", "copy", "reset", "edit", "orders", "optimize"])
    label = serializers.CharField()
    allowed = serializers.BooleanField()
    reason = serializers.CharField(help_text="Why it is not allowed now; empty when it is.")


class RunSerializer(serializers.ModelSerializer):
    strategy_id = serializers.IntegerField(source="strategy_version.strategy_id")
    strategy_name = serializers.CharField(source="strategy_version.strategy.name")
    strategy_version_number = serializers.IntegerField(source="strategy_version.number")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Run
        fields = [
            "id", "description", "mode", "status", "strategy_id", "strategy_name", "strategy_version", "strategy_version_number",
            "progress", "portfolio_value", "pnl", "created_by", "created_at", "start_requested_at", "started_at",
            "kill_requested_at", "finished_at", "copied_from", "study_id",
        ]
        read_only_fields = fields


class RunEventSerializer(serializers.Serializer):
    kind = serializers.CharField()
    at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor.username", allow_null=True, default=None)
    note = serializers.CharField()


class RunDetailSerializer(RunSerializer):
    config = serializers.JSONField(help_text="{environment, strategy, core}")
    metrics = serializers.JSONField()
    start_blocker = serializers.SerializerMethodField(help_text="Why Start is unavailable now, or null.")
    actions = serializers.SerializerMethodField()
    timeline = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "config", "metrics", "bars_processed", "heartbeat_at", "start_blocker", "actions", "timeline"]
        read_only_fields = fields

    def get_start_blocker(self, run) -> str | None:
        return run_start_blocker(run=run) if run.status == Status.NEW else None

    @extend_schema_field(RunActionSerializer(many=True))
    def get_actions(self, run) -> list[dict]:
        return RunActionSerializer(run_actions(run=run, user=self.context["request"].user), many=True).data

    @extend_schema_field(RunEventSerializer(many=True))
    def get_timeline(self, run) -> list[dict]:
        return RunEventSerializer(run_timeline(run=run), many=True).data


class RunCreateSerializer(serializers.Serializer):
    strategy_version = serializers.IntegerField(
        required=False, min_value=1, help_text="The published version to run (its id). Give this or `strategy`."
    )
    strategy = serializers.IntegerField(required=False, min_value=1, help_text="A strategy id: runs its latest published version.")
    mode = serializers.ChoiceField(choices=Mode.choices, default=Mode.BACKTEST)
    description = serializers.CharField(allow_blank=True, max_length=200, help_text="What this run is for (required).")
    config = RunConfigSerializer(required=False, default=dict)

    def validate(self, data):
        version_id, strategy_id = data.get("strategy_version"), data.get("strategy")
        if version_id is None and strategy_id is None:
            raise serializers.ValidationError({"strategy_version": "give the version to run (or `strategy` for its latest version)"})
        if version_id is not None:
            version = StrategyVersion.objects.select_related("strategy").filter(pk=version_id).first()
            if version is None:
                raise serializers.ValidationError({"strategy_version": f"there is no strategy version {version_id}: list them at /api/v1/strategies/"})
            if strategy_id is not None and version.strategy_id != strategy_id:
                raise serializers.ValidationError({"strategy": f"version {version_id} belongs to strategy {version.strategy_id}, not {strategy_id}"})
        else:
            version = strategy_version_latest(strategy=_strategy_or_none(strategy_id))
            if version is None:
                raise serializers.ValidationError({"strategy": f"strategy {strategy_id} does not exist or has no published version"})
        data["version"] = version
        return data


def _strategy_or_none(strategy_id: int) -> Strategy | None:
    return Strategy.objects.filter(pk=strategy_id).first()


class RunUpdateSerializer(serializers.Serializer):
    config = RunConfigSerializer(required=False, help_text="The whole config; omitted: keep the current one.")
    description = serializers.CharField(required=False, allow_blank=True, max_length=200)


class RunCopySerializer(serializers.Serializer):
    description = serializers.CharField(required=False, allow_blank=True, max_length=200, help_text='Default: "Copy of <description>".')


class OrderMetricsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    by_group = serializers.DictField(child=serializers.IntegerField(), help_text="filled / open / cancelled / rejected -> count")
    fills = serializers.IntegerField()
    filled_quantity = serializers.DecimalField(max_digits=24, decimal_places=8)
    commission = serializers.DecimalField(max_digits=24, decimal_places=8)
    fill_rate = serializers.FloatField(allow_null=True, help_text="Filled share of the orders that reached a final state.")


class PerformanceSerializer(serializers.Serializer):
    portfolio_value = serializers.DecimalField(max_digits=24, decimal_places=8, allow_null=True)
    cash = serializers.DecimalField(max_digits=24, decimal_places=8, allow_null=True)
    unrealized_pnl = serializers.DecimalField(max_digits=24, decimal_places=8)
    realized_pnl = serializers.DecimalField(max_digits=24, decimal_places=8)
    pnl = serializers.DecimalField(max_digits=24, decimal_places=8, allow_null=True)
    open_positions = serializers.IntegerField()
    orders = OrderMetricsSerializer()
    metrics = serializers.JSONField(help_text="Computed at the end of the run: returns, Sharpe, drawdown ...")


class EquitySerializer(serializers.Serializer):
    times = serializers.ListField(child=serializers.IntegerField(), help_text="UNIX seconds")
    values = serializers.ListField(child=serializers.FloatField(), help_text="Portfolio value")
    drawdown_times = serializers.ListField(child=serializers.IntegerField())
    drawdowns = serializers.ListField(
        child=serializers.FloatField(allow_null=True), help_text="Fraction below the running peak; null where undefined."
    )
    points = serializers.IntegerField(help_text="Stored points before downsampling.")


class PositionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Position
        exclude = ["run"]


class OrderSerializer(serializers.ModelSerializer):
    class Meta:
        model = Order
        exclude = ["run", "id"]


class IssueSerializer(serializers.ModelSerializer):
    class Meta:
        model = Issue
        exclude = ["run", "fingerprint"]


class LogEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = LogEntry
        fields = ["sequence", "time", "level", "message"]


# --- views ------------------------------------------------------------------------------------------

RUN_ID = OpenApiParameter("run_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The run's id.")


class RunListView(ApiView):
    @extend_schema(
        operation_id="runs_list",
        summary="List runs, newest first",
        parameters=[
            OpenApiParameter("status", str, enum=Status.values, description="Only runs in this status."),
            OpenApiParameter("mode", str, enum=Mode.values, description="Only runs of this mode."),
            OpenApiParameter("strategy", int, description="Only runs of this strategy (id)."),
            OpenApiParameter("search", str, description="Matches the description or the strategy's name."),
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int, description="At most 200."),
        ],
        responses={200: paginated(RunSerializer), **error_responses(400, 404)},
    )
    def get(self, request):
        params = request.query_params
        errors = {}
        status = params.get("status", "")
        if status and status not in Status.values:
            errors["status"] = f"unknown status '{status}': choose one of {', '.join(Status.values)}"
        mode = params.get("mode", "")
        if mode and mode not in Mode.values:
            errors["mode"] = f"unknown mode '{mode}': choose one of {', '.join(Mode.values)}"
        strategy = params.get("strategy", "")
        if strategy and not strategy.isdigit():
            errors["strategy"] = "must be a strategy id (a whole number)"
        if errors:
            raise serializers.ValidationError(errors)
        runs = run_list(status=status, mode=mode, strategy_id=int(strategy) if strategy else None, search=params.get("search", "")[:100])
        paginator = ApiPagination()
        page = paginator.paginate_queryset(runs, request, view=self)
        return paginator.get_paginated_response(RunSerializer(page, many=True).data)

    @extend_schema(
        operation_id="runs_create",
        summary="Create a run (Operator; Live trader for Live)",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=RunCreateSerializer,
        responses={201: RunDetailSerializer, **error_responses(400, 403, 422)},
    )
    def post(self, request):
        payload = RunCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        _require_role(request.user, action="run.create", mode=data["mode"])
        run = run_create(
            user=request.user, strategy_version=data["version"], mode=data["mode"], description=data["description"], config=data["config"]
        )
        return Response(RunDetailSerializer(_get_run(run.pk), context={"request": request}).data, status=201)


class RunDetailView(ApiView):
    @extend_schema(operation_id="runs_retrieve", summary="A run: config, state, and the actions this user may take now",
                   parameters=[RUN_ID], responses={200: RunDetailSerializer, **error_responses(404)})
    def get(self, request, run_id: int):
        return Response(RunDetailSerializer(_get_run(run_id), context={"request": request}).data)

    @extend_schema(
        operation_id="runs_update_config",
        summary="Edit a new run's config and description",
        description="Only while the run is `new` (409 after): the config is read-only once started; use copy.",
        parameters=[RUN_ID, IDEMPOTENCY_PARAMETER],
        request=RunUpdateSerializer,
        responses={200: RunDetailSerializer, **error_responses(400, 403, 404, 409, 422)},
    )
    def patch(self, request, run_id: int):
        run = _get_run(run_id)
        payload = RunUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        _require_role(request.user, action="run.update_config", mode=run.mode, run=run)
        run = run_update_config(run=run, user=request.user, config=data.get("config", run.config), description=data.get("description"))
        return Response(RunDetailSerializer(_get_run(run.pk), context={"request": request}).data)


def _action_schema(action: str, summary: str, *, request=None, status: int = 200):
    return extend_schema(
        operation_id=f"runs_{action}",
        summary=summary,
        parameters=[RUN_ID, IDEMPOTENCY_PARAMETER],
        request=request,
        responses={status: RunDetailSerializer, **error_responses(400, 403, 404, 409, 422)},
    )


class RunStartView(ApiView):
    @_action_schema("start", "Start a new run: new → starting; a worker picks it up")
    def post(self, request, run_id: int):
        run = _get_run(run_id)
        _require_role(request.user, action="run.start", mode=run.mode, run=run)
        run = run_start(run=run, user=request.user)
        return Response(RunDetailSerializer(_get_run(run.pk), context={"request": request}).data)


class RunKillView(ApiView):
    @_action_schema("kill", "Kill a starting or running run")
    def post(self, request, run_id: int):
        run = _get_run(run_id)
        _require_role(request.user, action="run.kill", mode=run.mode, run=run)
        run = run_kill(run=run, user=request.user)
        return Response(RunDetailSerializer(_get_run(run.pk), context={"request": request}).data)


class RunCopyView(ApiView):
    @_action_schema("copy", "Copy a run's config into a new run (answers the new run)", request=RunCopySerializer, status=201)
    def post(self, request, run_id: int):
        run = _get_run(run_id)
        payload = RunCopySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        _require_role(request.user, action="run.copy", mode=run.mode, run=run)
        try:
            copy = run_copy(run=run, user=request.user, description=payload.validated_data.get("description") or None)
        except RunConfigError as exc:
            # As in the console: the original's config no longer holds (e.g. a delisted symbol).
            raise ApiError(409, "conflict", "Cannot copy: " + "; ".join(exc.errors.values()), exc.errors) from exc
        return Response(RunDetailSerializer(_get_run(copy.pk), context={"request": request}).data, status=201)


class RunResetView(ApiView):
    @_action_schema("reset", "Reset a finished Backtest/Paper run to new, clearing its results")
    def post(self, request, run_id: int):
        run = _get_run(run_id)
        _require_role(request.user, action="run.reset", mode=run.mode, run=run)
        run = run_reset(run=run, user=request.user)
        return Response(RunDetailSerializer(_get_run(run.pk), context={"request": request}).data)


class RunPerformanceView(ApiView):
    @extend_schema(operation_id="runs_performance", summary="The Performance tab's summary figures",
                   parameters=[RUN_ID], responses={200: PerformanceSerializer, **error_responses(404)})
    def get(self, request, run_id: int):
        summary = performance_summary(run=_get_run(run_id))
        data = {**summary.__dict__, "orders": {**summary.orders.__dict__, "fill_rate": summary.orders.fill_rate}}
        return Response(PerformanceSerializer(data).data)


class RunEquityView(ApiView):
    @extend_schema(
        operation_id="runs_equity",
        summary="Equity curve and drawdown, downsampled on the server",
        parameters=[
            RUN_ID,
            OpenApiParameter(
                "max_points", int, description=f"At most this many points per series ({EQUITY_MIN_POINTS}..{EQUITY_MAX_POINTS}, "
                f"default {CHART_MAX_POINTS}); the highest and lowest points always survive."
            ),
        ],
        responses={200: EquitySerializer, **error_responses(400, 404)},
    )
    def get(self, request, run_id: int):
        run = _get_run(run_id)
        text = request.query_params.get("max_points", "")
        if text and not (text.isdigit() and EQUITY_MIN_POINTS <= int(text) <= EQUITY_MAX_POINTS):
            raise serializers.ValidationError({"max_points": f"must be a whole number from {EQUITY_MIN_POINTS} to {EQUITY_MAX_POINTS}"})
        series = equity_series(run_id=run.pk, max_points=int(text) if text else CHART_MAX_POINTS)
        return Response(EquitySerializer(series.__dict__).data)


class RunPositionsView(ApiView):
    @extend_schema(operation_id="runs_positions", summary="Open positions", parameters=[RUN_ID],
                   responses={200: PositionSerializer(many=True), **error_responses(404)})
    def get(self, request, run_id: int):
        return Response(PositionSerializer(positions_open(run_id=_get_run(run_id).pk), many=True).data)


def _paged(view, request, items, serializer_class) -> Response:
    paginator = ApiPagination()
    page = paginator.paginate_queryset(items, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


PAGE_PARAMETERS = [OpenApiParameter("page", int), OpenApiParameter("page_size", int, description="At most 200.")]


class RunOrdersView(ApiView):
    @extend_schema(
        operation_id="runs_orders",
        summary="A run's orders, newest first",
        parameters=[RUN_ID, OpenApiParameter("group", str, enum=list(ORDER_STATE_GROUPS), description="Only orders of this state group."), *PAGE_PARAMETERS],
        responses={200: paginated(OrderSerializer), **error_responses(400, 404)},
    )
    def get(self, request, run_id: int):
        run = _get_run(run_id)
        group = request.query_params.get("group", "")
        if group and group not in ORDER_STATE_GROUPS:
            raise serializers.ValidationError({"group": f"unknown group '{group}': choose one of {', '.join(ORDER_STATE_GROUPS)}"})
        orders = Order.objects.filter(run_id=run.pk)
        if group:
            orders = orders.filter(state__in=ORDER_STATE_GROUPS[group][1])
        return _paged(self, request, orders.order_by("-order_id"), OrderSerializer)


class RunOrdersCsvView(ApiView):
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(self, request, force=False):
        # The CSV is streamed past the renderers; errors are always JSON, whatever Accept says.
        return JSONRenderer(), JSONRenderer.media_type

    @extend_schema(
        operation_id="runs_orders_csv",
        summary="The orders CSV (one row per order, creation order), streamed",
        parameters=[RUN_ID],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV with a header row"), **error_responses(404, 409)},
    )
    def get(self, request, run_id: int):
        run = _get_run(run_id)
        if run.status == Status.NEW:
            raise ApiError(409, "conflict", "Download Orders is available once the run has started.")
        response = StreamingHttpResponse(orders_csv_lines(run_id=run.pk), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-orders.csv"'
        return response


class RunIssuesView(ApiView):
    @extend_schema(operation_id="runs_issues", summary="A run's issues: errors first, then the most recently seen",
                   parameters=[RUN_ID, *PAGE_PARAMETERS], responses={200: paginated(IssueSerializer), **error_responses(404)})
    def get(self, request, run_id: int):
        return _paged(self, request, issue_list(run_id=_get_run(run_id).pk), IssueSerializer)


class RunLogsView(ApiView):
    @extend_schema(operation_id="runs_logs", summary="A run's strategy log, newest line first",
                   parameters=[RUN_ID, *PAGE_PARAMETERS], responses={200: paginated(LogEntrySerializer), **error_responses(404)})
    def get(self, request, run_id: int):
        run = _get_run(run_id)
        return _paged(self, request, LogEntry.objects.filter(run_id=run.pk).order_by("-sequence"), LogEntrySerializer)


# --- Optimize studies -------------------------------------------------------------------------------


class StudySerializer(serializers.ModelSerializer):
    strategy_name = serializers.CharField(source="strategy_version.strategy.name")
    strategy_version_number = serializers.IntegerField(source="strategy_version.number")
    search_space = serializers.DictField(child=serializers.ListField(child=serializers.JSONField()), help_text="parameter -> the values tried")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    finished_trials = serializers.IntegerField()
    failed_trials = serializers.IntegerField()
    progress = serializers.SerializerMethodField(help_text="Finished trials, in percent.")

    class Meta:
        model = Study
        fields = [
            "id", "description", "status", "base_run", "strategy_version", "strategy_name", "strategy_version_number",
            "search_space", "search_mode", "objective_metric", "objective_direction", "trial_count", "finished_trials",
            "failed_trials", "progress", "created_by", "created_at", "started_at", "kill_requested_at", "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, study) -> int:
        return study_progress(study)


class StudyCreateSerializer(serializers.Serializer):
    base_run = serializers.IntegerField(min_value=1, help_text="The Backtest run whose config the trials vary (its id).")
    description = serializers.CharField(allow_blank=True, max_length=200, help_text="What this study is for (required).")
    search_space = serializers.DictField(
        child=serializers.JSONField(),
        help_text='parameter -> values: a list ([5, 10, 20]), a range "start:stop:step" ("5:50:5") or a comma-separated '
        'list ("5, 10, 20"), e.g. {"fast": [5, 10], "slow": "20:100:20"}.',
    )
    search_mode = serializers.ChoiceField(choices=Study.SearchMode.choices, default=Study.SearchMode.SWEEP)
    objective_metric = serializers.ChoiceField(choices=list(METRICS), default="sharpe")
    objective_direction = serializers.ChoiceField(choices=Study.Direction.choices, default=Study.Direction.MAX)


class TrialSerializer(serializers.Serializer):
    run = serializers.IntegerField(source="run.pk", help_text="The trial's run (see /api/v1/runs/{id}/).")
    description = serializers.CharField(source="run.description")
    status = serializers.ChoiceField(source="run.status", choices=Status.choices)
    values = serializers.DictField(child=serializers.JSONField(), help_text="The varied parameters' values in this trial.")
    metrics = serializers.DictField(child=serializers.JSONField(), help_text="The trial's metrics once complete.")
    baseline = serializers.BooleanField(help_text="The base run's own values.")
    best = serializers.BooleanField(help_text="The best complete trial for the study's objective.")


class TrialTableSerializer(serializers.Serializer):
    parameters = serializers.ListField(child=serializers.CharField(), help_text="The varied parameters.")
    sort = serializers.CharField(help_text='The column sorted by: "trial", a parameter or a metric.')
    descending = serializers.BooleanField()
    best = serializers.IntegerField(source="best.run.pk", allow_null=True, default=None, help_text="The best trial's run id, or null.")
    trials = TrialSerializer(source="rows", many=True)


def _get_study(study_id: int) -> Study:
    study = study_detail(study_id=study_id)
    if study is None:
        raise Http404(f"There is no study {study_id}.")
    return study


def _require_operator_for_study(user, *, action: str, study: Study | None = None) -> None:
    """The Optimize page's check: trials are Backtest runs, so the Operator role."""
    if not user.has_perm("runs.operate_run"):
        audit_record(actor=user, action=action, object_type="study", object_id=study.pk if study else "", allowed=False, detail={"via": "api"})
        raise PermissionDenied("You need the Operator role to do this.")


STUDY_ID = OpenApiParameter("study_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The study's id.")


class StudyListView(ApiView):
    @extend_schema(operation_id="studies_list", summary="Optimize studies, newest first", parameters=PAGE_PARAMETERS,
                   responses={200: paginated(StudySerializer), **error_responses(404)})
    def get(self, request):
        return _paged(self, request, study_list().order_by("-created_at", "-id"), StudySerializer)

    @extend_schema(
        operation_id="studies_create",
        summary="Create a study of a Backtest run and start its trials (Operator)",
        description="Every trial's config is validated first; nothing is stored on error (400 `invalid_study`, "
        "field_errors keyed by parameter, `description`, `objective`, `base_run` or `space`).",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=StudyCreateSerializer,
        responses={201: StudySerializer, **error_responses(400, 403, 422)},
    )
    def post(self, request):
        payload = StudyCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        base_run = run_detail(run_id=data["base_run"])
        if base_run is None:
            raise serializers.ValidationError({"base_run": f"there is no run {data['base_run']}: pick the Backtest run the study varies"})
        _require_operator_for_study(request.user, action="study.create")
        try:
            study = study_create(
                user=request.user,
                base_run=base_run,
                description=data["description"],
                space_spec=data["search_space"],
                mode=data["search_mode"],
                objective_metric=data["objective_metric"],
                objective_direction=data["objective_direction"],
            )
        except StudyError as exc:
            raise ApiError(400, "invalid_study", "The study is invalid: " + str(exc), exc.errors) from exc
        return Response(StudySerializer(_get_study(study.pk)).data, status=201)


class StudyDetailView(ApiView):
    @extend_schema(operation_id="studies_retrieve", summary="A study and its progress", parameters=[STUDY_ID],
                   responses={200: StudySerializer, **error_responses(404)})
    def get(self, request, study_id: int):
        return Response(StudySerializer(_get_study(study_id)).data)


class StudyTrialsView(ApiView):
    @extend_schema(
        operation_id="studies_trials",
        summary="The trial table: each trial's values and metrics, and the best for the objective",
        parameters=[
            STUDY_ID,
            OpenApiParameter("sort", str, description='"trial" (default), a varied parameter or a metric; trials without the value go last.'),
            OpenApiParameter("direction", str, enum=["asc", "desc"], description="Default: asc by trial, desc by a column."),
        ],
        responses={200: TrialTableSerializer, **error_responses(400, 404)},
    )
    def get(self, request, study_id: int):
        study = _get_study(study_id)
        sort = request.query_params.get("sort", "")
        direction = request.query_params.get("direction", "desc" if sort else "asc")
        if direction not in ("asc", "desc"):
            raise serializers.ValidationError({"direction": "use asc or desc"})
        table = study_trial_table(study=study, sort=sort, descending=direction == "desc")
        return Response(TrialTableSerializer(table).data)


class StudyKillView(ApiView):
    @extend_schema(
        operation_id="studies_kill",
        summary="Stop a running study: its unfinished trials are killed, finished ones kept (Operator)",
        parameters=[STUDY_ID, IDEMPOTENCY_PARAMETER],
        request=None,
        responses={200: StudySerializer, **error_responses(400, 403, 404, 409, 422)},
    )
    def post(self, request, study_id: int):
        study = _get_study(study_id)
        _require_operator_for_study(request.user, action="study.kill", study=study)
        study_kill(study=study, user=request.user)
        return Response(StudySerializer(_get_study(study.pk)).data)
