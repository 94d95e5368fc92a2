"""/api/v1/runs/...: reading for every logged-in role, creating and acting for Operators (Live
trader for Live runs), each refusal in the error shape and audited, as in the console."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from issues.models import AuditEvent
from portfolio.models import BrokerAccount
from runs.models import Mode, Run, RunEvent, Status
from tests.api.conftest import assert_error
from tests.api.factories import IssueFactory, LogEntryFactory
from tests.portfolio.factories import OrderFactory, PositionFactory, equity_points_store
from tests.runs.factories import RunFactory
from tests.strategies.factories import StrategyVersionFactory

READERS = ["viewer", "operator", "live_trader", "author", None]
CONFIG = {"environment": {"start": "2017-01-03", "end": "2017-03-31"}, "strategy": {"symbol": "MSFT"}, "core": {}}


def started(**fields) -> Run:
    now = timezone.now()
    return RunFactory(start_requested_at=now, started_at=now, **fields)


# --- list and detail --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", READERS)
def test_every_logged_in_role_lists_runs_newest_first(as_role, role):
    older, newer = RunFactory(description="older"), RunFactory(description="newer")
    body = as_role(role).get("/api/v1/runs/").json()
    assert body["count"] == 2
    assert [run["id"] for run in body["results"]] == [newer.pk, older.pk]
    assert body["results"][0]["strategy_name"] == newer.strategy_version.strategy.name


def test_anonymous_is_refused_with_401(as_role):
    response = as_role("anonymous").get("/api/v1/runs/")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_a_token_authenticates_a_script(token_client):
    run = RunFactory()
    assert token_client.get(f"/api/v1/runs/{run.pk}/").json()["id"] == run.pk


def test_a_wrong_token_is_401(as_role):
    client = as_role("anonymous")
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")
    assert_error(client.get("/api/v1/runs/"), 401, "authentication_failed")


def test_the_list_filters_by_status_mode_strategy_and_search(as_role):
    version = StrategyVersionFactory(strategy__name="Golden cross")
    wanted = RunFactory(strategy_version=version, status=Status.COMPLETE, description="nightly batch")
    RunFactory(strategy_version=version, status=Status.NEW, description="nightly batch")
    RunFactory(status=Status.COMPLETE, description="nightly batch")
    RunFactory(strategy_version=version, status=Status.COMPLETE, mode=Mode.PAPER, description="nightly batch")
    client = as_role("viewer")
    query = f"/api/v1/runs/?status=complete&mode=backtest&strategy={version.strategy_id}&search=nightly"
    assert [run["id"] for run in client.get(query).json()["results"]] == [wanted.pk]
    assert [run["id"] for run in client.get("/api/v1/runs/?search=golden&status=complete&mode=backtest").json()["results"]] == [wanted.pk]


def test_an_unknown_filter_value_is_a_400_naming_the_field(as_role):
    body = assert_error(as_role("viewer").get("/api/v1/runs/?status=done&mode=x"), 400, "invalid", field="status")
    assert "mode" in body["field_errors"]


def test_the_list_pages(as_role):
    runs = [RunFactory() for _ in range(5)]
    client = as_role("viewer")
    first = client.get("/api/v1/runs/?page_size=2").json()
    assert first["count"] == 5 and len(first["results"]) == 2 and first["previous"] is None
    last = client.get("/api/v1/runs/?page_size=2&page=3").json()
    assert [run["id"] for run in last["results"]] == [runs[0].pk] and last["next"] is None
    assert_error(client.get("/api/v1/runs/?page_size=2&page=4"), 404, "not_found")


def test_the_detail_has_the_config_and_the_actions_this_user_may_take(as_role):
    run = RunFactory(config=CONFIG)
    viewer = as_role("viewer").get(f"/api/v1/runs/{run.pk}/").json()
    assert viewer["config"]["strategy"]["symbol"] == "MSFT"
    actions = {action["name"]: action for action in viewer["actions"]}
    assert actions["start"] == {"name": "start", "label": "Start Run", "allowed": False, "reason": "needs the Operator role"}
    operator = as_role("operator").get(f"/api/v1/runs/{run.pk}/").json()
    assert {action["name"]: action["allowed"] for action in operator["actions"]}["start"] is True
    assert operator["start_blocker"] is None
    assert [event["kind"] for event in operator["timeline"]] == []


def test_an_unknown_run_is_a_404_in_the_error_shape(as_role):
    body = assert_error(as_role("viewer").get("/api/v1/runs/999999/"), 404, "not_found")
    assert "999999" in body["message"]


# --- create ------------------------------------------------------------------------------------------


def test_an_operator_creates_a_run_from_a_version(as_role):
    version = StrategyVersionFactory()
    client = as_role("operator")
    response = client.post("/api/v1/runs/", {"strategy_version": version.pk, "description": "nightly", "config": CONFIG})
    assert response.status_code == 201, response.json()
    run = Run.objects.get(pk=response.json()["id"])
    assert (run.status, run.mode, run.created_by, run.description) == (Status.NEW, Mode.BACKTEST, client.user, "nightly")
    assert run.config["strategy"]["symbol"] == "MSFT"
    assert AuditEvent.objects.filter(action="run.create", allowed=True, object_id=str(run.pk)).exists()


def test_a_run_can_be_created_from_a_strategys_latest_version(as_role):
    first = StrategyVersionFactory()
    latest = StrategyVersionFactory(strategy=first.strategy)
    response = as_role("operator").post("/api/v1/runs/", {"strategy": first.strategy_id, "description": "x", "config": CONFIG})
    assert response.json()["strategy_version"] == latest.pk


@pytest.mark.parametrize("role", ["viewer", "author", None])
def test_creating_is_refused_without_the_operator_role_and_audited(as_role, role):
    version = StrategyVersionFactory()
    response = as_role(role).post("/api/v1/runs/", {"strategy_version": version.pk, "description": "x", "config": CONFIG})
    body = assert_error(response, 403, "permission_denied")
    assert "Operator role" in body["message"]
    assert not Run.objects.exists()
    assert AuditEvent.objects.filter(action="run.create", allowed=False).exists()


def test_creating_anonymously_is_401(as_role):
    version = StrategyVersionFactory()
    assert_error(as_role("anonymous").post("/api/v1/runs/", {"strategy_version": version.pk, "description": "x"}), 401, "not_authenticated")


def test_a_token_user_creates_a_run(token_client):
    version = StrategyVersionFactory()
    response = token_client.post("/api/v1/runs/", {"strategy_version": version.pk, "description": "from cron", "config": CONFIG})
    assert response.status_code == 201
    assert Run.objects.get().created_by == token_client.user


def test_live_runs_need_the_live_trader_role_and_the_switch(as_role, settings):
    version = StrategyVersionFactory()
    live = {"strategy_version": version.pk, "mode": "live", "description": "live", "config": {"environment": {"broker_account": "A1"}}}
    BrokerAccount.objects.create(name="A1", key_id_env="A1_KEY_ID", secret_env="A1_SECRET")
    settings.LIVE_TRADING_ENABLED = True
    assert_error(as_role("operator").post("/api/v1/runs/", live), 403, "permission_denied")
    assert as_role("live_trader").post("/api/v1/runs/", live).status_code == 201
    settings.LIVE_TRADING_ENABLED = False
    body = assert_error(as_role("live_trader").post("/api/v1/runs/", live), 403, "permission_denied")
    assert "LIVE_TRADING_ENABLED" in body["message"]


def test_an_invalid_config_is_a_400_with_the_section_field_errors(as_role):
    version = StrategyVersionFactory()
    config = {"environment": {"start": "2017-03-31", "end": "2017-01-03"}, "strategy": {"symbol": "MSFT"}, "core": {}}
    response = as_role("operator").post("/api/v1/runs/", {"strategy_version": version.pk, "description": "", "config": config})
    body = assert_error(response, 400, "invalid_config", field="environment.end")
    assert body["field_errors"]["description"].startswith("required")
    assert not Run.objects.exists()


def test_an_unknown_version_is_a_400_naming_the_field(as_role):
    response = as_role("operator").post("/api/v1/runs/", {"strategy_version": 424242, "description": "x"})
    assert_error(response, 400, "invalid", field="strategy_version")


def test_a_missing_body_field_is_a_400(as_role):
    assert_error(as_role("operator").post("/api/v1/runs/", {}), 400, "invalid", field="description")


# --- update config -----------------------------------------------------------------------------------


def test_an_operator_edits_a_new_runs_config(as_role):
    run = RunFactory(config=CONFIG)
    edited = {**CONFIG, "environment": {"start": "2017-02-01", "end": "2017-03-31"}}
    response = as_role("operator").patch(f"/api/v1/runs/{run.pk}/", {"config": edited, "description": "February on"})
    assert response.status_code == 200, response.json()
    run.refresh_from_db()
    assert (run.config["environment"]["start"], run.description) == ("2017-02-01", "February on")


def test_editing_a_started_run_is_a_409(as_role):
    run = started(status=Status.RUNNING, config=CONFIG)
    body = assert_error(as_role("operator").patch(f"/api/v1/runs/{run.pk}/", {"config": CONFIG}), 409, "conflict")
    assert "read-only" in body["message"]


def test_editing_with_an_invalid_value_is_a_400(as_role):
    run = RunFactory(config=CONFIG)
    response = as_role("operator").patch(f"/api/v1/runs/{run.pk}/", {"config": {**CONFIG, "core": {"nonsense": 1}}})
    assert_error(response, 400, "invalid_config", field="core.nonsense")


def test_a_viewer_cannot_edit(as_role):
    run = RunFactory(config=CONFIG)
    assert_error(as_role("viewer").patch(f"/api/v1/runs/{run.pk}/", {"description": "mine"}), 403, "permission_denied")
    run.refresh_from_db()
    assert run.description != "mine"


def test_put_and_delete_are_405(as_role):
    run = RunFactory()
    client = as_role("operator")
    assert_error(client.put(f"/api/v1/runs/{run.pk}/", {}), 405, "method_not_allowed")
    assert_error(client.delete(f"/api/v1/runs/{run.pk}/"), 405, "method_not_allowed")
    assert Run.objects.filter(pk=run.pk).exists()


# --- actions -----------------------------------------------------------------------------------------


def test_an_operator_starts_a_run_and_one_task_is_enqueued(as_role, django_capture_on_commit_callbacks):
    run = RunFactory(config=CONFIG)
    with django_capture_on_commit_callbacks() as callbacks:
        response = as_role("operator").post(f"/api/v1/runs/{run.pk}/start")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == Status.STARTING
    assert len(callbacks) == 1


@pytest.mark.parametrize("role", ["viewer", "author", None])
def test_start_is_refused_without_the_role(as_role, role):
    run = RunFactory(config=CONFIG)
    assert_error(as_role(role).post(f"/api/v1/runs/{run.pk}/start"), 403, "permission_denied")
    run.refresh_from_db()
    assert run.status == Status.NEW
    assert AuditEvent.objects.filter(action="run.start", allowed=False, object_id=str(run.pk)).exists()


def test_starting_an_incomplete_run_is_a_409_saying_what_is_missing(as_role):
    run = RunFactory(config={"environment": {}, "strategy": {"symbol": "MSFT"}, "core": {}})
    body = assert_error(as_role("operator").post(f"/api/v1/runs/{run.pk}/start"), 409, "conflict")
    assert "config incomplete: start, end" in body["message"]


def test_a_live_run_needs_the_live_trader_to_start(as_role, settings):
    settings.LIVE_TRADING_ENABLED = True
    run = RunFactory(mode=Mode.LIVE, config={"environment": {"broker_account": "A1"}, "strategy": {"symbol": "MSFT"}, "core": {}})
    assert_error(as_role("operator").post(f"/api/v1/runs/{run.pk}/start"), 403, "permission_denied")
    # The role is there; the config names no broker account that exists, which is a state refusal.
    body = assert_error(as_role("live_trader").post(f"/api/v1/runs/{run.pk}/start"), 409, "conflict")
    assert "config invalid: broker_account" in body["message"]
    BrokerAccount.objects.create(name="A1", key_id_env="A1_KEY_ID", secret_env="A1_SECRET")
    assert as_role("live_trader").post(f"/api/v1/runs/{run.pk}/start").status_code == 200


def test_kill_of_a_running_run_records_the_request(as_role):
    run = started(status=Status.RUNNING)
    response = as_role("operator").post(f"/api/v1/runs/{run.pk}/kill")
    assert response.status_code == 200
    assert response.json()["kill_requested_at"] is not None
    assert RunEvent.objects.filter(run=run, kind=RunEvent.Kind.KILL_REQUESTED).count() == 1


def test_kill_of_a_finished_run_is_a_409_and_a_viewer_gets_403(as_role):
    run = started(status=Status.COMPLETE)
    assert_error(as_role("operator").post(f"/api/v1/runs/{run.pk}/kill"), 409, "conflict")
    assert_error(as_role("viewer").post(f"/api/v1/runs/{started(status=Status.RUNNING).pk}/kill"), 403, "permission_denied")


def test_copy_answers_the_new_run(as_role):
    run = started(status=Status.COMPLETE, config=CONFIG, description="original")
    response = as_role("operator").post(f"/api/v1/runs/{run.pk}/copy", {"description": "second try"})
    assert response.status_code == 201
    copy = Run.objects.get(pk=response.json()["id"])
    assert (copy.copied_from, copy.status, copy.description) == (run, Status.NEW, "second try")
    assert copy.config["environment"] == run.config["environment"] and copy.config["strategy"]["symbol"] == "MSFT"


def test_copy_without_a_body_uses_the_default_description(as_role):
    run = started(status=Status.COMPLETE, config=CONFIG, description="original")
    assert as_role("operator").post(f"/api/v1/runs/{run.pk}/copy").json()["description"] == "Copy of original"


def test_copy_of_a_config_that_no_longer_holds_is_a_409_with_the_fields(as_role):
    run = started(status=Status.COMPLETE, config={**CONFIG, "strategy": {"symbol": "NOPE"}})
    body = assert_error(as_role("operator").post(f"/api/v1/runs/{run.pk}/copy"), 409, "conflict", field="strategy.symbol")
    assert body["message"].startswith("Cannot copy")


def test_copy_is_refused_to_a_viewer(as_role):
    run = started(status=Status.COMPLETE, config=CONFIG)
    assert_error(as_role("viewer").post(f"/api/v1/runs/{run.pk}/copy"), 403, "permission_denied")
    assert Run.objects.count() == 1


def test_reset_clears_a_finished_runs_results(as_role):
    run = started(status=Status.COMPLETE, config=CONFIG, pnl=Decimal("5"))
    OrderFactory(run=run)
    response = as_role("operator").post(f"/api/v1/runs/{run.pk}/reset")
    assert response.status_code == 200 and response.json()["status"] == Status.NEW
    assert not run.orders.exists()


def test_reset_of_a_running_run_is_a_409_and_a_live_run_is_never_reset(as_role, settings):
    assert_error(as_role("operator").post(f"/api/v1/runs/{started(status=Status.RUNNING).pk}/reset"), 409, "conflict")
    live = started(status=Status.COMPLETE, mode=Mode.LIVE)
    body = assert_error(as_role("live_trader").post(f"/api/v1/runs/{live.pk}/reset"), 409, "conflict")
    assert "never reset" in body["message"]


# --- results -----------------------------------------------------------------------------------------


def test_performance_summary(as_role):
    run = started(status=Status.COMPLETE, portfolio_value=Decimal("100500"), pnl=Decimal("500"), metrics={"sharpe": 1.2})
    OrderFactory(run=run, state="filled")
    OrderFactory(run=run, state="rejected", filled_quantity=Decimal(0))
    PositionFactory(run=run, realized_pnl=Decimal("20"), unrealized_pnl=Decimal("480"))
    body = as_role("viewer").get(f"/api/v1/runs/{run.pk}/performance").json()
    assert Decimal(body["portfolio_value"]) == Decimal("100500")
    assert Decimal(body["unrealized_pnl"]) == Decimal("480") and Decimal(body["realized_pnl"]) == Decimal("20")
    assert body["orders"]["total"] == 2 and body["orders"]["by_group"]["rejected"] == 1
    assert body["orders"]["fill_rate"] == 0.5
    assert body["metrics"] == {"sharpe": 1.2} and body["open_positions"] == 1


def test_equity_is_downsampled_on_request(as_role):
    run = started(status=Status.COMPLETE)
    start = timezone.now() - timedelta(days=100)
    equity_points_store(run=run, times=[start + timedelta(days=day) for day in range(50)], values=[100000 + (day % 7) * 100 for day in range(50)])
    client = as_role("viewer")
    full = client.get(f"/api/v1/runs/{run.pk}/equity").json()
    assert len(full["times"]) == 50 and full["points"] == 50
    small = client.get(f"/api/v1/runs/{run.pk}/equity?max_points=10").json()
    assert len(small["times"]) <= 10 and small["points"] == 50
    assert max(small["values"]) == max(full["values"]) and min(small["values"]) == min(full["values"])
    assert_error(client.get(f"/api/v1/runs/{run.pk}/equity?max_points=2"), 400, "invalid", field="max_points")


def test_positions_are_the_open_ones(as_role):
    run = started(status=Status.COMPLETE)
    PositionFactory(run=run, symbol="MSFT")
    PositionFactory(run=run, symbol="AAPL", quantity=Decimal(0))
    assert [position["symbol"] for position in as_role("viewer").get(f"/api/v1/runs/{run.pk}/positions").json()] == ["MSFT"]


def test_orders_are_paged_newest_first_and_filtered_by_group(as_role):
    run = started(status=Status.COMPLETE)
    for order_id in range(1, 6):
        OrderFactory(run=run, order_id=order_id, state="filled" if order_id != 3 else "rejected", filled_quantity=Decimal(10 if order_id != 3 else 0))
    client = as_role("viewer")
    page = client.get(f"/api/v1/runs/{run.pk}/orders?page_size=2").json()
    assert page["count"] == 5 and [order["order_id"] for order in page["results"]] == [5, 4]
    rejected = client.get(f"/api/v1/runs/{run.pk}/orders?group=rejected").json()
    assert [order["order_id"] for order in rejected["results"]] == [3]
    assert_error(client.get(f"/api/v1/runs/{run.pk}/orders?group=weird"), 400, "invalid", field="group")


def test_the_orders_csv_streams_and_is_refused_for_a_new_run(as_role):
    run = started(status=Status.COMPLETE)
    OrderFactory(run=run, order_id=1, symbol="=cmd")
    client = as_role("viewer")
    response = client.get(f"/api/v1/runs/{run.pk}/orders.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("order_id,client_order_id") and "'=cmd" in lines[1]
    body = assert_error(client.get(f"/api/v1/runs/{RunFactory().pk}/orders.csv", HTTP_ACCEPT="text/csv"), 409, "conflict")
    assert "once the run has started" in body["message"]


def test_issues_errors_first_and_logs_newest_first(as_role):
    run = started(status=Status.ERROR)
    IssueFactory(run=run, severity="warning", message="slow fill")
    IssueFactory(run=run, severity="error", message="crashed")
    for _ in range(3):
        LogEntryFactory(run=run)
    client = as_role("viewer")
    issues = client.get(f"/api/v1/runs/{run.pk}/issues").json()
    assert [issue["message"] for issue in issues["results"]] == ["crashed", "slow fill"]
    logs = client.get(f"/api/v1/runs/{run.pk}/logs?page_size=2").json()
    sequences = [entry["sequence"] for entry in logs["results"]]
    assert logs["count"] == 3 and sequences == sorted(sequences, reverse=True) and len(sequences) == 2


@pytest.mark.parametrize("suffix", ["performance", "equity", "positions", "orders", "orders.csv", "issues", "logs"])
def test_results_need_a_login(as_role, suffix):
    run = started(status=Status.COMPLETE)
    assert_error(as_role("anonymous").get(f"/api/v1/runs/{run.pk}/{suffix}"), 401, "not_authenticated")
