"""Run lifecycle services (product.md §7). Depends on: the test database (SQLite or PostgreSQL),
the security master rows made by factories, and the tiny buy-and-hold bundle of
StrategyVersionFactory (parameters: symbol EQUITY default MSFT, frequency pinned to day)."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied

from issues.models import AuditEvent, Issue, LogEntry
from portfolio.models import EquityChunk, LedgerEntry, Order
from runs.config import RunConfigError
from runs.models import Mode, Run, RunEvent, Status
from runs.services import (
    RunActionError,
    run_copy,
    run_create,
    run_kill,
    run_reset,
    run_start,
    run_start_blocker,
    run_update_config,
)
from tests.runs.factories import RunFactory
from tests.securities.factories import SecurityFactory
from tests.strategies.factories import StrategyVersionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def msft():
    return SecurityFactory(symbol="MSFT", name="Microsoft Corporation", asset_type="equity")


@pytest.fixture
def operator(django_user_model):
    user = django_user_model.objects.create_user("op", password="pw")
    user.groups.add(Group.objects.get(name="Operator"))
    return user


@pytest.fixture
def viewer(django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw")
    user.groups.add(Group.objects.get(name="Viewer"))
    return user


def backtest_config(**strategy):
    return {"environment": {"start": "2017-01-03", "end": "2017-03-31"}, "strategy": {"symbol": "MSFT", **strategy}, "core": {}}


def test_create_stores_the_cleaned_config_and_a_timeline_event(msft, operator):
    run = run_create(user=operator, strategy_version=StrategyVersionFactory(), description="  first  ", config=backtest_config(symbol="msft"))
    assert run.status == Status.NEW
    assert run.description == "first"
    assert run.config["strategy"]["symbol"] == "MSFT"
    assert run.config["environment"] == {"start": "2017-01-03", "end": "2017-03-31"}
    assert list(run.events.values_list("kind", flat=True)) == [RunEvent.Kind.CREATED]
    assert AuditEvent.objects.filter(action="run.create", object_id=str(run.pk), allowed=True).exists()


def test_create_reports_every_invalid_field_by_section(msft, operator):
    config = {
        "environment": {"start": "2017-03-31", "end": "2017-01-03", "colour": "red"},
        "strategy": {"symbol": "MSFT", "nonsense": 1},
        "core": {"starting_cash": "-5"},
        "extra": {},
    }
    with pytest.raises(RunConfigError) as caught:
        run_create(user=operator, strategy_version=StrategyVersionFactory(), description="", config=config)
    errors = caught.value.errors
    assert "description" in errors
    assert "after start" in errors["environment.end"]
    assert "environment.colour" in errors
    assert "strategy.nonsense" in errors
    assert "core.starting_cash" in errors
    assert "extra" in errors
    assert not Run.objects.exists()


def test_symbol_under_another_asset_type_is_refused_with_the_security_master_explanation(operator):
    SecurityFactory(symbol="ES", name="E-mini S&P 500", asset_type="future")
    with pytest.raises(RunConfigError) as caught:
        run_create(user=operator, strategy_version=StrategyVersionFactory(), description="x", config=backtest_config(symbol="ES"))
    assert "found as Future" in caught.value.errors["strategy.symbol"]


def test_a_run_with_missing_values_can_be_saved_but_not_started(msft, operator):
    run = run_create(user=operator, strategy_version=StrategyVersionFactory(), description="draft", config={"strategy": {"symbol": "MSFT"}})
    assert run_start_blocker(run=run) == "config incomplete: start, end"
    with pytest.raises(RunActionError, match="config incomplete: start, end"):
        run_start(run=run, user=operator)
    run = run_update_config(run=run, user=operator, config=backtest_config())
    assert run_start_blocker(run=run) is None


def test_start_moves_new_to_starting_and_enqueues_one_task_on_commit(msft, operator, django_capture_on_commit_callbacks):
    run = RunFactory()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run_start(run=run, user=operator)
    run.refresh_from_db()
    assert run.status == Status.STARTING and run.start_requested_at is not None
    assert len(callbacks) == 1
    with django_capture_on_commit_callbacks(execute=False) as callbacks, pytest.raises(RunActionError, match="the run is starting"):
        run_start(run=run, user=operator)
    assert callbacks == []


def test_config_is_read_only_after_start(msft, operator, django_capture_on_commit_callbacks):
    run = RunFactory()
    with django_capture_on_commit_callbacks(execute=False):
        run_start(run=run, user=operator)
    with pytest.raises(RunActionError, match="read-only"):
        run_update_config(run=run, user=operator, config=backtest_config())


def test_kill_of_a_starting_run_stops_it_at_once(msft, operator, django_capture_on_commit_callbacks):
    run = RunFactory()
    with django_capture_on_commit_callbacks(execute=False):
        run_start(run=run, user=operator)
    run = run_kill(run=run, user=operator)
    assert run.status == Status.STOPPED and run.kill_requested_at and run.finished_at
    kinds = list(run.events.values_list("kind", flat=True))
    assert kinds[-2:] == [RunEvent.Kind.KILL_REQUESTED, RunEvent.Kind.STOPPED]


def test_kill_of_a_running_run_records_the_request_once(msft, operator):
    run = RunFactory(status=Status.RUNNING)
    run = run_kill(run=run, user=operator)
    assert run.status == Status.RUNNING and run.kill_requested_at is not None
    with pytest.raises(RunActionError, match="already requested"):
        run_kill(run=run, user=operator)


@pytest.mark.parametrize("status", [Status.NEW, Status.COMPLETE, Status.STOPPED, Status.ERROR])
def test_kill_is_refused_when_not_starting_or_running(msft, operator, status):
    with pytest.raises(RunActionError, match=f"the run is {status}"):
        run_kill(run=RunFactory(status=status), user=operator)


def test_copy_makes_a_new_run_with_the_same_version_and_config(msft, operator):
    original = run_create(user=operator, strategy_version=StrategyVersionFactory(), description="original", config=backtest_config())
    copy = run_copy(run=original, user=operator)
    assert copy.pk != original.pk
    assert (copy.status, copy.strategy_version_id, copy.config, copy.copied_from_id) == (Status.NEW, original.strategy_version_id, original.config, original.pk)


def test_reset_clears_results_and_keeps_a_reset_mark(msft, operator):
    from tests.portfolio.factories import LedgerEntryFactory, OrderFactory, equity_points_store

    run = RunFactory(status=Status.COMPLETE, progress=100, pnl=12)
    OrderFactory(run=run)
    LedgerEntryFactory(run=run)
    equity_points_store(run=run, times=[run.created_at], values=[100000])
    Issue.objects.create(run=run, code="data_gap", component="data", classification="user", severity="warning", fingerprint="f", message="gap", first_seen=run.created_at, last_seen=run.created_at)
    LogEntry.objects.create(run=run, sequence=1, time=run.created_at, level="INFO", message="hello")
    run = run_reset(run=run, user=operator)
    assert (run.status, run.progress, run.pnl, run.metrics) == (Status.NEW, 0, None, {})
    for model in (Order, LedgerEntry, EquityChunk, Issue, LogEntry):
        assert not model.objects.filter(run=run).exists()
    assert run.events.filter(kind=RunEvent.Kind.RESET).exists()


def test_reset_is_refused_for_live_and_for_unfinished_runs(msft, operator):
    with pytest.raises(RunActionError, match="never reset"):
        run_reset(run=RunFactory(mode=Mode.LIVE, status=Status.STOPPED), user=operator)
    with pytest.raises(RunActionError, match="only finished runs"):
        run_reset(run=RunFactory(status=Status.RUNNING), user=operator)


def test_a_viewer_is_refused_and_the_refusal_is_audited(msft, viewer):
    run = RunFactory()
    with pytest.raises(PermissionDenied, match="Operator role"):
        run_start(run=run, user=viewer)
    run.refresh_from_db()
    assert run.status == Status.NEW
    assert AuditEvent.objects.filter(actor=viewer, action="run.start", allowed=False).exists()


def test_live_runs_need_the_deployment_switch_and_the_live_role(msft, operator, settings):
    settings.LIVE_TRADING_ENABLED = False
    with pytest.raises(PermissionDenied, match="disabled on this deployment"):
        run_create(user=operator, strategy_version=StrategyVersionFactory(), mode=Mode.LIVE, description="live", config={"environment": {"broker_account": "x"}})
    settings.LIVE_TRADING_ENABLED = True
    with pytest.raises(PermissionDenied, match="Live trader role"):
        run_create(user=operator, strategy_version=StrategyVersionFactory(), mode=Mode.LIVE, description="live", config={"environment": {"broker_account": "x"}})
