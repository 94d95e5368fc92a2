"""End to end through a real Celery worker process: the web side starts a run, the worker
(over the configured broker — Redis in CI) executes it, and the ledger lands in the database
(PostgreSQL in CI). Depends on: the `celery_worker_process` fixture; MSFT daily bars from
`daily_bars`; the factory's buy-and-hold bundle."""

import pytest

from portfolio.models import Fill
from runs.models import Run, Status
from runs.services import run_kill, run_start
from tests.conftest import wait_for
from tests.portfolio.factories import stored_equity
from tests.runs.factories import RunFactory, daily_bars
from tests.securities.factories import SecurityFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_executes_a_backtest_to_complete_and_its_ledger_is_stored(celery_worker_process):
    security = SecurityFactory(symbol="MSFT", name="Microsoft Corporation", asset_type="equity")
    daily_bars(security=security, start="2017-01-03", closes=[62.0 + 0.5 * i for i in range(60)])
    run = RunFactory()
    run_start(run=run, user=None)

    finished = wait_for(
        lambda: Run.objects.filter(pk=run.pk, status__in=[Status.COMPLETE, Status.ERROR, Status.STOPPED]).first(),
        timeout=60,
        message=f"run {run.pk} to finish; worker log:\n{celery_worker_process.log_path}",
    )
    assert finished.status == Status.COMPLETE, celery_worker_process.log_path.read_text()
    assert Fill.objects.filter(run=run).count() == 1
    _times, values, _cash = stored_equity(run)
    assert len(values) == 61  # the starting point, then one per bar
    assert float(finished.portfolio_value) == values[-1]
    assert "runs.execute_run[" in celery_worker_process.log_path.read_text()


def test_a_kill_stops_a_running_backtest_within_two_seconds_and_keeps_its_results(celery_worker_process):
    import time

    from tests.strategies.factories import StrategyVersionFactory

    security = SecurityFactory(symbol="MSFT", name="Microsoft Corporation", asset_type="equity")
    daily_bars(security=security, start="2015-01-02", closes=[40.0 + 0.01 * i for i in range(700)])
    slow_strategy = (
        "import time\n"
        "from strategies.sdk import StrategyBase, Subscribe\n"
        "class Strategy(StrategyBase):\n"
        "    def on_start(self, now):\n"
        "        return [Subscribe(self.config['symbol'], 'EQUITY', 'day')]\n"
        "    def on_bar(self, event):\n"
        "        time.sleep(0.05)  # 700 bars: about 35 s unless killed\n"
    )
    version = StrategyVersionFactory(files={**StrategyVersionFactory.build().files, "strategy.py": slow_strategy})
    run = RunFactory(strategy_version=version, config={"environment": {"start": "2015-01-02", "end": "2017-12-29"}, "strategy": {"symbol": "MSFT", "frequency": "day"}, "core": {}})
    run_start(run=run, user=None)
    wait_for(lambda: Run.objects.filter(pk=run.pk, status=Status.RUNNING, bars_processed__gt=0).exists(), timeout=60, message="the run to be running")
    run_kill(run=Run.objects.get(pk=run.pk), user=None)
    killed_at = time.monotonic()
    stopped = wait_for(lambda: Run.objects.filter(pk=run.pk, status=Status.STOPPED).first(), timeout=10, interval=0.05, message="the run to stop")
    assert time.monotonic() - killed_at < 2.0
    assert 0 < stopped.bars_processed < 700
    assert len(stored_equity(run)[0]) == stopped.bars_processed + 1
