"""Paper runs: the replay feed driven end to end by a real Celery worker (Start → running with
orders, fills, positions and equity landing in the database while it runs → Kill → stopped
within two seconds, results kept → Reset clears them), and the stale-run sweep.
Depends on: the `celery_worker_process` fixture; MSFT daily bars from `daily_bars`; the
factory's buy-and-hold bundle (buys on its first bar, fills on the next bar's open)."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from issues.models import Issue
from portfolio.models import EquityChunk, Fill, LedgerEntry, Order, Position
from runs.execution import run_execute, runs_stale_sweep
from runs.models import Mode, Run, RunEvent, Status
from runs.runners.paper import replay_start_for
from runs.services import RunActionError, run_kill, run_reset, run_start, run_start_blocker
from tests.conftest import role_group, wait_for
from tests.portfolio.factories import stored_equity
from tests.runs.factories import RunFactory, daily_bars
from tests.securities.factories import SecurityFactory

CLOSES = [62.0 + 0.5 * i for i in range(60)]


def paper_run(**environment):
    return RunFactory(
        mode=Mode.PAPER,
        config={"environment": {"feed": "replay", "speed": 100000, **environment}, "strategy": {"symbol": "MSFT", "frequency": "day"}, "core": {}},
    )


def msft_daily():
    security = SecurityFactory(symbol="MSFT", name="Microsoft Corporation", asset_type="equity")
    daily_bars(security=security, start="2017-01-03", closes=CLOSES)
    return security


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_paper_run_trades_on_a_worker_while_running_then_kill_and_reset(celery_worker_process, client, django_user_model):
    msft_daily()
    run = paper_run(replay_start="2017-01-03")  # at 100000x a trading day passes in under a second
    assert run_start_blocker(run=run) is None
    run_start(run=run, user=None)

    def trading_visible():
        current = Run.objects.get(pk=run.pk)
        assert current.status in (Status.STARTING, Status.RUNNING), celery_worker_process.log_path.read_text()
        return (
            current.status == Status.RUNNING
            and Fill.objects.filter(run=run).exists()
            and Position.objects.filter(run=run, quantity__gt=0).exists()
            and len(stored_equity(run)[0]) >= 3
            and current.bars_processed >= 2
        )

    wait_for(trading_visible, timeout=60, message=f"fills, positions and equity while running; worker log: {celery_worker_process.log_path}")
    running = Run.objects.get(pk=run.pk)
    assert running.heartbeat_at > timezone.now() - timedelta(seconds=10)
    assert running.portfolio_value is not None and running.progress == 0
    fill = Fill.objects.get(run=run)
    assert fill.price == pytest.approx(CLOSES[1] - 0.25)  # bought on bar 1, filled at bar 2's open

    # The console while it runs: no percentage, the live clock; Performance refreshes every 10 s.
    viewer = django_user_model.objects.create_user("viewer", password="pw")
    viewer.groups.add(role_group("Viewer"))
    client.force_login(viewer)
    page = client.get(f"/runs/{run.pk}/?tab=performance").content.decode()
    assert "live since " in page and " UTC · " in page
    assert 'aria-valuenow' not in page
    assert 'hx-trigger="every 10s"' in page
    performance = client.get(f"/runs/{run.pk}/?tab=performance", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="performance")
    assert performance.status_code == 200
    assert "MSFT" in performance.content.decode() and "Refreshing every 10 s" in performance.content.decode()

    run_kill(run=running, user=None)
    killed_at = time.monotonic()
    stopped = wait_for(lambda: Run.objects.filter(pk=run.pk, status=Status.STOPPED).first(), timeout=10, interval=0.05, message="the run to stop")
    assert time.monotonic() - killed_at < 2.0
    assert stopped.bars_processed < len(CLOSES)
    assert Fill.objects.filter(run=run).count() == 1
    assert Order.objects.filter(run=run).count() == 1
    assert len(stored_equity(run)[0]) >= 3
    assert stopped.metrics  # computed at the end, like a backtest's

    reset = run_reset(run=stopped, user=None)
    assert reset.status == Status.NEW and reset.portfolio_value is None and reset.bars_processed == 0
    for model in (Fill, Order, Position, LedgerEntry, EquityChunk, Issue):
        assert not model.objects.filter(run=run).exists(), model.__name__
    assert RunEvent.objects.filter(run=run, kind=RunEvent.Kind.RESET).exists()


@pytest.mark.django_db
def test_a_paper_run_in_process_completes_when_the_replay_runs_out_of_data():
    msft_daily()
    run = paper_run(replay_start="2017-03-20")  # the last 8 sessions: about 8 s at 100000x
    run.status = Status.STARTING
    run.save()
    assert run_execute(run_id=run.pk) == Status.COMPLETE
    finished = Run.objects.get(pk=run.pk)
    assert finished.bars_processed == 8
    assert Fill.objects.filter(run=run).count() == 1
    assert len(stored_equity(run)[0]) == 9
    assert finished.metrics["trades"] is not None or finished.metrics


@pytest.mark.django_db
def test_the_default_replay_start_is_the_last_twenty_sessions_of_the_configured_symbol():
    msft_daily()
    run = paper_run()
    start = replay_start_for(environment=run.config["environment"], strategy_config=run.config["strategy"], schema=run.strategy_version.config_schema)
    assert start.isoformat() == "2017-03-02T14:30:00+00:00"  # the 20 sessions ending 2017-03-29, the last bar


@pytest.mark.django_db
def test_a_stale_running_paper_run_is_marked_worker_lost_by_the_sweep():
    old = timezone.now() - timedelta(minutes=10)
    stale = paper_run()
    Run.objects.filter(pk=stale.pk).update(status=Status.RUNNING, started_at=old, heartbeat_at=old)
    fresh = paper_run()
    Run.objects.filter(pk=fresh.pk).update(status=Status.RUNNING, started_at=old, heartbeat_at=timezone.now())

    assert runs_stale_sweep() == {"worker_lost": [stale.pk], "redelivered": []}
    stale.refresh_from_db()
    assert stale.status == Status.ERROR
    issue = Issue.objects.get(run=stale)
    assert issue.code == "worker_lost" and issue.classification == "system"
    assert Run.objects.get(pk=fresh.pk).status == Status.RUNNING
    assert runs_stale_sweep() == {"worker_lost": [], "redelivered": []}  # once


@pytest.fixture
def stale_paper_run(transactional_db):
    """A Paper run `running` whose worker died ten minutes ago (made before the worker starts)."""
    old = timezone.now() - timedelta(minutes=10)
    run = paper_run()
    Run.objects.filter(pk=run.pk).update(status=Status.RUNNING, started_at=old, heartbeat_at=old)
    return run


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_sweeps_stale_runs_when_it_starts(stale_paper_run, celery_worker_process):
    swept = wait_for(lambda: Run.objects.filter(pk=stale_paper_run.pk, status=Status.ERROR).first(), timeout=20, message="the sweep")
    assert Issue.objects.filter(run=swept, code="worker_lost").exists()


@pytest.mark.django_db
def test_a_running_paper_run_cannot_be_reset():
    run = paper_run()
    Run.objects.filter(pk=run.pk).update(status=Status.RUNNING, heartbeat_at=timezone.now())
    with pytest.raises(RunActionError, match="only finished runs can be reset"):
        run_reset(run=Run.objects.get(pk=run.pk), user=None)


@pytest.mark.django_db
def test_a_replay_start_date_means_that_sessions_open_and_a_time_is_taken_as_is():
    msft_daily()
    schema = paper_run().strategy_version.config_schema
    strategy = {"symbol": "MSFT", "frequency": "day"}
    on_date = replay_start_for(environment={"replay_start": "2017-03-18"}, strategy_config=strategy, schema=schema)
    assert on_date.isoformat() == "2017-03-20T13:30:00+00:00"  # a Saturday: Monday's open (EDT)
    at_time = replay_start_for(environment={"replay_start": "2017-03-20T10:00"}, strategy_config=strategy, schema=schema)
    assert at_time.isoformat() == "2017-03-20T14:00:00+00:00"  # 10:00 New York
