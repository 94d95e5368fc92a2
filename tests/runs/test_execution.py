"""The run task's contract: claim, run, always finish; safe to deliver twice. Depends on: the
test database; MSFT daily bars made by BarFactory rows; the factory's buy-and-hold bundle."""

from datetime import timedelta

import pytest
from django.utils import timezone

from issues.models import Issue
from portfolio.models import Fill, LedgerEntry, Order
from portfolio.selectors import OrderMetrics, order_metrics
from runs.execution import run_execute, run_finish
from runs.models import Mode, RunEvent, Status
from tests.portfolio.factories import stored_equity
from tests.runs.factories import RunFactory, daily_bars
from tests.securities.factories import SecurityFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def msft_bars():
    security = SecurityFactory(symbol="MSFT", name="Microsoft Corporation", asset_type="equity")
    daily_bars(security=security, start="2017-01-03", closes=[62.0 + 0.5 * i for i in range(60)])
    return security


def test_a_starting_backtest_runs_to_complete_with_its_ledger(msft_bars):
    run = RunFactory(status=Status.STARTING)
    assert run_execute(run_id=run.pk) == Status.COMPLETE
    run.refresh_from_db()
    assert run.status == Status.COMPLETE and run.progress == 100
    assert run.started_at and run.finished_at and run.started_at <= run.finished_at
    assert Order.objects.filter(run=run, state="filled").count() == 1
    assert OrderMetrics.from_stats(run.order_stats) == order_metrics(run_id=run.pk)  # kept by the recorder
    fill = Fill.objects.get(run=run)
    assert fill.price == pytest.approx(62.25)  # next bar's open after the first bar's close
    assert LedgerEntry.objects.filter(run=run, kind="deposit").count() == 1
    _times, values, _cash = stored_equity(run)
    assert len(values) == 61  # the starting point, then one per bar
    assert float(run.portfolio_value) == values[-1]
    assert run.metrics["trades"] == 0 and run.metrics["total_return"] > 0
    assert list(run.events.values_list("kind", flat=True)) == [RunEvent.Kind.STARTED, RunEvent.Kind.COMPLETED]


def test_a_second_delivery_does_nothing(msft_bars):
    run = RunFactory(status=Status.STARTING)
    run_execute(run_id=run.pk)
    orders_before = Order.objects.filter(run=run).count()
    assert run_execute(run_id=run.pk) is None
    assert Order.objects.filter(run=run).count() == orders_before
    assert run.events.filter(kind=RunEvent.Kind.STARTED).count() == 1


def test_a_run_that_is_not_starting_is_never_executed(msft_bars):
    for status in (Status.NEW, Status.STOPPED):
        run = RunFactory(status=status)
        assert run_execute(run_id=run.pk) is None
        run.refresh_from_db()
        assert run.status == status


def test_a_platform_failure_ends_in_error_with_an_internal_error_issue(msft_bars):
    # A stored config that validation would have refused (written straight to the row): the
    # platform, not the strategy, fails.
    run = RunFactory(
        status=Status.STARTING, mode=Mode.PAPER,
        config={"environment": {"feed": "replay", "replay_start": "not-a-date"}, "strategy": {}, "core": {}},
    )
    assert run_execute(run_id=run.pk) == Status.ERROR
    run.refresh_from_db()
    assert run.status == Status.ERROR and run.finished_at
    issue = Issue.objects.get(run=run)
    assert (issue.code, issue.classification, issue.component) == ("internal_error", "system", "platform")
    assert "'not-a-date' is not a date" in issue.message


def test_a_strategy_exception_ends_in_error_with_a_trimmed_traceback(msft_bars):
    from tests.strategies.factories import StrategyVersionFactory

    code = (
        "from strategies.sdk import StrategyBase, Subscribe\n"
        "class Strategy(StrategyBase):\n"
        "    def on_start(self, now):\n"
        "        return [Subscribe(self.config['symbol'], 'EQUITY', 'day')]\n"
        "    def on_bar(self, event):\n"
        "        return 1 / 0\n"
    )
    version = StrategyVersionFactory(files={**StrategyVersionFactory.build().files, "strategy.py": code})
    run = RunFactory(status=Status.STARTING, strategy_version=version)
    assert run_execute(run_id=run.pk) == Status.ERROR
    issue = Issue.objects.get(run=run, code="strategy_exception")
    assert "ZeroDivisionError" in issue.message and "strategy.py:6" in issue.message
    assert "runs/engine" not in issue.detail


def test_a_redelivered_task_marks_a_run_with_a_stale_heartbeat_as_worker_lost(msft_bars):
    run = RunFactory(status=Status.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert run_execute(run_id=run.pk) is None
    run.refresh_from_db()
    assert run.status == Status.ERROR
    assert Issue.objects.get(run=run).code == "worker_lost"


def test_a_run_with_a_fresh_heartbeat_is_left_to_its_worker(msft_bars):
    run = RunFactory(status=Status.RUNNING, heartbeat_at=timezone.now())
    assert run_execute(run_id=run.pk) is None
    run.refresh_from_db()
    assert run.status == Status.RUNNING


def test_finish_happens_once(msft_bars):
    run = RunFactory(status=Status.RUNNING)
    assert run_finish(run_id=run.pk, status=Status.COMPLETE) is True
    assert run_finish(run_id=run.pk, status=Status.ERROR) is False
    run.refresh_from_db()
    assert run.status == Status.COMPLETE
