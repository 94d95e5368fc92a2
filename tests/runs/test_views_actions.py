"""Run actions from the detail panel, for every role: a Viewer is refused with 403, an Operator
may act on Backtest and Paper runs, Live runs need the Live trader role and the deployment
switch. Depends on: the test database, the role groups of migration runs/0002 and the
factories; no worker (a Start's task is enqueued on commit, which these tests never reach)."""

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from issues.models import AuditEvent
from portfolio.models import Order
from runs.models import Mode, Run, RunEvent, Status
from tests.portfolio.factories import OrderFactory
from tests.runs.factories import RunFactory
from tests.securities.factories import SecurityFactory
from tests.strategies.factories import StrategyVersionFactory

pytestmark = pytest.mark.django_db


HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "run-panel"}


def _user(django_user_model, name: str, role: str | None):
    user = django_user_model.objects.create_user(name, password="pw")
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture(autouse=True)
def msft():
    return SecurityFactory(symbol="MSFT", name="Microsoft Corporation")


@pytest.fixture
def as_role(client, django_user_model):
    """Log the test client in as a new user with the given role."""

    def login(role: str | None):
        name = f"{(role or 'nobody').replace(' ', '_').lower()}{django_user_model.objects.count()}"
        client.force_login(_user(django_user_model, name, role))
        return client

    return login


def started(**fields) -> Run:
    return RunFactory(start_requested_at=timezone.now(), started_at=timezone.now(), **fields)


# --- Start Run --------------------------------------------------------------------------------------


def test_start_is_refused_to_a_viewer_with_403_and_audited(as_role):
    run = RunFactory()
    response = as_role("Viewer").post(f"/runs/{run.pk}/start", **HTMX)
    assert response.status_code == 403
    assert "Operator role" in response.content.decode()
    assert '"toast"' in response["HX-Trigger"]
    run.refresh_from_db()
    assert run.status == Status.NEW
    assert AuditEvent.objects.filter(action="run.start", object_id=str(run.pk), allowed=False).exists()


def test_a_plain_post_refused_gets_the_403_page(as_role):
    run = RunFactory()
    response = as_role("Viewer").post(f"/runs/{run.pk}/start")
    assert response.status_code == 403
    assert "Not allowed" in response.content.decode()


def test_start_by_an_operator_moves_the_run_to_starting_and_reloads_the_panel(as_role):
    run = RunFactory()
    response = as_role("Operator").post(f"/runs/{run.pk}/start", **HTMX)
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#run-panel"
    assert "runs-changed" in response["HX-Trigger"] and "is starting" in response["HX-Trigger"]
    run.refresh_from_db()
    assert run.status == Status.STARTING
    html = response.content.decode()
    assert 'data-status="starting"' in html and "Kill Run" in html and "Start Run" not in html
    assert 'hx-trigger="every 2s"' in html  # the header follows the run from here


def test_start_without_htmx_redirects_to_the_run_with_a_message(as_role):
    run = RunFactory()
    client = as_role("Operator")
    response = client.post(f"/runs/{run.pk}/start")
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert "is starting" in client.get(response["Location"]).content.decode()


def test_start_is_disabled_with_the_reason_while_the_config_is_incomplete(as_role):
    version = StrategyVersionFactory(files=_files_with_required_symbol())
    run = RunFactory(strategy_version=version, config={"environment": {"start": "2017-01-03", "end": "2017-03-31"}, "strategy": {}, "core": {}})
    client = as_role("Operator")
    html = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'disabled aria-describedby="why-start">Start Run</button>' in html
    assert "config incomplete: symbol" in html
    refused = client.post(f"/runs/{run.pk}/start", **HTMX)
    assert refused.status_code == 409
    assert "config incomplete: symbol" in refused.content.decode()


def test_a_viewer_sees_the_actions_disabled_with_the_reason(as_role):
    run = RunFactory()
    html = as_role("Viewer").get(f"/runs/{run.pk}/").content.decode()
    assert 'disabled aria-describedby="why-start">Start Run</button>' in html
    assert 'disabled aria-describedby="why-copy">Copy</button>' in html
    assert "needs the Operator role" in html


# --- Kill Run -----------------------------------------------------------------------------------


def test_kill_is_refused_to_a_viewer(as_role):
    run = started(status=Status.RUNNING)
    assert as_role("Viewer").post(f"/runs/{run.pk}/kill", **HTMX).status_code == 403
    run.refresh_from_db()
    assert run.kill_requested_at is None


def test_kill_by_an_operator_records_the_request(as_role):
    run = started(status=Status.RUNNING)
    response = as_role("Operator").post(f"/runs/{run.pk}/kill", **HTMX)
    assert response.status_code == 200
    run.refresh_from_db()
    assert run.kill_requested_at is not None
    assert RunEvent.objects.filter(run=run, kind=RunEvent.Kind.KILL_REQUESTED).exists()
    html = response.content.decode()
    assert "Stopping" in html and "kill requested: the run is stopping" in html


def test_kill_of_a_finished_run_is_a_409(as_role):
    run = started(status=Status.COMPLETE)
    response = as_role("Operator").post(f"/runs/{run.pk}/kill", **HTMX)
    assert response.status_code == 409
    assert "Cannot kill" in response.content.decode()


def test_the_kill_confirmation_changes_with_the_mode(as_role, settings):
    settings.LIVE_TRADING_ENABLED = True
    client = as_role("Live trader")
    backtest = client.get(f"/runs/{started(status=Status.RUNNING).pk}/").content.decode()
    assert "The backtest stops at the next bar" in backtest
    paper = client.get(f"/runs/{started(status=Status.RUNNING, mode=Mode.PAPER).pk}/").content.decode()
    assert "The paper run stops at once" in paper
    live_run = started(status=Status.RUNNING, mode=Mode.LIVE, config={"environment": {"broker_account": "ACC-7"}, "strategy": {}, "core": {}})
    live = client.get(f"/runs/{live_run.pk}/").content.decode()
    assert "Trading on broker account ACC-7 stops at once." in live
    assert "Open positions are not closed." in live


# --- Live gating ----------------------------------------------------------------------------------


def test_an_operator_cannot_act_on_a_live_run(as_role, settings):
    settings.LIVE_TRADING_ENABLED = True
    run = started(status=Status.RUNNING, mode=Mode.LIVE)
    response = as_role("Operator").post(f"/runs/{run.pk}/kill", **HTMX)
    assert response.status_code == 403
    assert "Live trader role" in response.content.decode()


def test_a_live_trader_may_kill_a_live_run(as_role, settings):
    settings.LIVE_TRADING_ENABLED = True
    run = started(status=Status.RUNNING, mode=Mode.LIVE)
    assert as_role("Live trader").post(f"/runs/{run.pk}/kill", **HTMX).status_code == 200
    run.refresh_from_db()
    assert run.kill_requested_at is not None


def test_starting_a_live_run_needs_the_deployment_switch(as_role, settings):
    settings.LIVE_TRADING_ENABLED = False
    run = RunFactory(mode=Mode.LIVE, config={"environment": {"broker_account": "ACC-7"}, "strategy": {"symbol": "MSFT"}, "core": {}})
    response = as_role("Live trader").post(f"/runs/{run.pk}/start", **HTMX)
    assert response.status_code == 403
    assert "Live trading is disabled" in response.content.decode()
    run.refresh_from_db()
    assert run.status == Status.NEW


def test_copy_of_a_live_run_needs_the_live_role(as_role, settings):
    settings.LIVE_TRADING_ENABLED = True
    run = started(status=Status.STOPPED, mode=Mode.LIVE, config={"environment": {"broker_account": "ACC-7"}, "strategy": {"symbol": "MSFT"}, "core": {}})
    assert as_role("Operator").post(f"/runs/{run.pk}/copy", **HTMX).status_code == 403
    assert Run.objects.count() == 1


# --- Copy, Reset, Edit Config ----------------------------------------------------------------------


def test_copy_is_refused_to_a_viewer(as_role):
    run = started(status=Status.COMPLETE)
    assert as_role("Viewer").post(f"/runs/{run.pk}/copy", **HTMX).status_code == 403
    assert Run.objects.count() == 1


def test_copy_by_an_operator_opens_the_new_run_with_its_config_form_editable(as_role):
    run = started(status=Status.COMPLETE, description="original")
    response = as_role("Operator").post(f"/runs/{run.pk}/copy", **HTMX)
    assert response.status_code == 200
    copy = Run.objects.exclude(pk=run.pk).get()
    assert copy.copied_from == run and copy.status == Status.NEW
    assert copy.config["environment"] == run.config["environment"] and copy.config["strategy"]["symbol"] == "MSFT"
    assert response["HX-Push-Url"] == f"/runs/{copy.pk}/"
    html = response.content.decode()
    assert 'id="run-form-edit"' in html and "Save Config" in html
    assert "Copy of original" in html


def test_reset_is_refused_to_a_viewer(as_role):
    run = started(status=Status.COMPLETE)
    assert as_role("Viewer").post(f"/runs/{run.pk}/reset", **HTMX).status_code == 403
    run.refresh_from_db()
    assert run.status == Status.COMPLETE


def test_reset_by_an_operator_clears_the_results(as_role):
    run = started(status=Status.COMPLETE, pnl=Decimal("5"))
    OrderFactory(run=run)
    response = as_role("Operator").post(f"/runs/{run.pk}/reset", **HTMX)
    assert response.status_code == 200
    run.refresh_from_db()
    assert run.status == Status.NEW and run.pnl is None
    assert not Order.objects.filter(run=run).exists()
    assert "was reset" in response["HX-Trigger"]


def test_reset_of_a_running_run_is_a_409_and_the_button_says_why(as_role):
    run = started(status=Status.RUNNING)
    client = as_role("Operator")
    assert client.post(f"/runs/{run.pk}/reset", **HTMX).status_code == 409
    assert "stop the run first" in client.get(f"/runs/{run.pk}/").content.decode()


def test_reset_is_not_offered_for_live_runs(as_role, settings):
    settings.LIVE_TRADING_ENABLED = True
    run = started(status=Status.STOPPED, mode=Mode.LIVE)
    html = as_role("Live trader").get(f"/runs/{run.pk}/").content.decode()
    assert "action-reset" not in html
    assert as_role("Live trader").post(f"/runs/{run.pk}/reset", **HTMX).status_code == 409


def test_edit_config_is_refused_to_a_viewer(as_role):
    run = RunFactory()
    response = as_role("Viewer").post(f"/runs/{run.pk}/config", {"description": "changed", "version": run.strategy_version_id}, **HTMX)
    assert response.status_code == 403
    run.refresh_from_db()
    assert run.description != "changed"


def test_edit_config_by_an_operator_saves_through_the_service(as_role):
    run = RunFactory(description="before")
    data = {"description": "after", "environment.start": "2017-02-01", "environment.end": "2017-03-01", "strategy.symbol": "msft"}
    response = as_role("Operator").post(f"/runs/{run.pk}/config", data, **HTMX)
    assert response.status_code == 200
    run.refresh_from_db()
    assert run.description == "after"
    assert run.config["environment"] == {"start": "2017-02-01", "end": "2017-03-01"}
    assert run.config["strategy"]["symbol"] == "MSFT"
    assert "Config saved." in response["HX-Trigger"]


def test_edit_config_errors_come_back_inline_with_422(as_role):
    run = RunFactory(description="before")
    data = {"description": "", "environment.start": "2017-03-01", "environment.end": "2017-02-01", "strategy.symbol": "MSFT"}
    response = as_role("Operator").post(f"/runs/{run.pk}/config", data, **HTMX)
    assert response.status_code == 422
    html = response.content.decode()
    assert html.lstrip().startswith('<form id="run-form-edit"')
    assert "required: say what this run is for" in html
    assert 'id="edit-environment-end-error">must be after start' in html
    run.refresh_from_db()
    assert run.description == "before"


def test_edit_config_after_start_is_refused_and_the_button_says_why(as_role):
    run = started(status=Status.COMPLETE)
    client = as_role("Operator")
    response = client.post(f"/runs/{run.pk}/config", {"description": "x", "strategy.symbol": "MSFT", "environment.start": "2017-01-03", "environment.end": "2017-03-31"}, **HTMX)
    assert response.status_code == 409
    assert "read-only once started: use Copy" in client.get(f"/runs/{run.pk}/").content.decode()


def test_edit_config_opens_the_editable_form_in_the_configuration_tab(as_role):
    run = RunFactory()
    html = as_role("Operator").get(f"/runs/{run.pk}/?tab=configuration&edit=1", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="run-body").content.decode()
    assert 'id="run-form-edit"' in html and f'hx-post="/runs/{run.pk}/config"' in html
    viewer_html = as_role("Viewer").get(f"/runs/{run.pk}/?tab=configuration&edit=1").content.decode()
    assert 'id="run-form-view"' in viewer_html and 'id="run-form-edit"' not in viewer_html


def test_actions_need_post(as_role):
    run = RunFactory()
    assert as_role("Operator").get(f"/runs/{run.pk}/start").status_code == 405


def test_optimize_is_offered_for_backtests_only(as_role):
    client = as_role("Operator")
    backtest = started(status=Status.COMPLETE)
    paper = started(status=Status.COMPLETE, mode=Mode.PAPER)
    assert f'href="/optimize/new?base={backtest.pk}"' in client.get(f"/runs/{backtest.pk}/").content.decode()
    assert "Optimize</a>" not in client.get(f"/runs/{paper.pk}/").content.decode().split('id="run-panel"')[1]


# --- Download Orders --------------------------------------------------------------------------------


def test_download_orders_is_available_once_started(as_role):
    client = as_role("Viewer")
    fresh = RunFactory()
    assert client.get(f"/runs/{fresh.pk}/orders.csv").status_code == 302  # back to the run with a message
    html = client.get(f"/runs/{fresh.pk}/").content.decode()
    assert "available once the run has started" in html

    run = started(status=Status.COMPLETE)
    OrderFactory(run=run, order_id=2, client_order_id="b", symbol="=HYPERLINK(1)")
    OrderFactory(run=run, order_id=1, client_order_id="a")
    response = client.get(f"/runs/{run.pk}/orders.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-orders.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["order_id", "client_order_id", "run_id"]
    assert [row[0] for row in rows[1:]] == ["1", "2"]
    assert rows[2][5] == "'=HYPERLINK(1)"


def _files_with_required_symbol() -> dict[str, str]:
    return {
        "strategy.py": "from strategies.sdk import StrategyBase\n\n\nclass Strategy(StrategyBase):\n    pass\n",
        "config_schema.json": (
            '{"type": "object", "properties": {"symbol": {"type": "string", "x-lookout-type": "symbol",'
            ' "x-lookout-asset-type": "EQUITY"}}, "required": ["symbol"]}'
        ),
    }
