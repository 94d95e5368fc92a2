"""Study services (runs/study_services.py): create validates every trial and stores nothing on
error; start fans the trials out; kill stops the unfinished trials; a failed trial does not fail
the study; the finish compare-and-set. Trials run here with study_trial_execute, which is what
the worker's task calls. Depends on: the SMA Crossover example bundle, MSFT daily bars from
`daily_bars`, the factories. The helpers at the top are shared by the other study tests."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied

from issues.models import Issue
from runs.execution import run_execute
from runs.models import Run, RunEvent, Status, Study, StudyStatus
from runs.services import RunActionError
from runs.studies import GRID
from runs.study_services import (
    StudyError,
    study_create,
    study_finish_if_done,
    study_kill,
    study_start,
    study_trial_execute,
)
from strategies.bundle import bundle_read_folder
from tests.runs.factories import RunFactory, daily_bars
from tests.securities.factories import SecurityFactory
from tests.strategies.factories import StrategyFactory, StrategyVersionFactory, UserFactory

pytestmark = pytest.mark.django_db
SMA_FOLDER = Path(__file__).resolve().parents[2] / "strategies" / "examples" / "sma_crossover"
FAILING_STRATEGY = (
    "from strategies.sdk import AssetType, StrategyBase, Subscribe\n"
    "class Strategy(StrategyBase):\n"
    "    def on_start(self, now):\n"
    "        if self.config['boom'] >= 1:\n"
    "            raise RuntimeError('boom')\n"
    "        return [Subscribe(self.config['symbol'], AssetType.EQUITY, 'day')]\n"
)
FAILING_SCHEMA = (
    '{"type": "object", "properties": {"symbol": {"type": "string", "x-lookout-type": "symbol", "x-lookout-asset-type": "EQUITY", "default": "MSFT"},'
    ' "boom": {"type": "integer", "default": 0}}}'
)


def sma_version():
    files = bundle_read_folder(SMA_FOLDER)
    return StrategyVersionFactory(strategy=StrategyFactory(name="SMA Crossover", files=files), files=files)


def msft_with_bars(count: int = 80):
    security = SecurityFactory(symbol="MSFT", name="Microsoft Corporation")
    # Up, down, up: the averages cross, so trials trade and differ.
    closes = [60.0 + 0.4 * i for i in range(30)] + [72.0 - 0.5 * i for i in range(25)] + [60.0 + 0.6 * i for i in range(count - 55)]
    daily_bars(security=security, start="2017-01-03", closes=closes)
    return security


def sma_base_run(version=None, **strategy):
    return RunFactory(
        strategy_version=version or sma_version(),
        status=Status.COMPLETE,
        config={"environment": {"start": "2017-01-03", "end": "2017-04-28"}, "strategy": {"symbol": "MSFT", "fast": 5, "slow": 15, "frequency": "day", **strategy}, "core": {}},
    )


def operator():
    from django.contrib.auth.models import Permission

    user = UserFactory()
    user.user_permissions.add(Permission.objects.get(content_type__app_label="runs", codename="operate_run"))
    return user


def test_create_makes_the_baseline_and_one_new_backtest_run_per_value():
    msft_with_bars()
    base = sma_base_run()
    user = operator()
    study = study_create(user=user, base_run=base, description="windows", space_spec={"fast": "3, 5, 8", "slow": [15, 25]}, start=False)
    trials = list(study.trials.order_by("pk"))
    assert study.status == StudyStatus.NEW and study.trial_count == len(trials) == 4
    assert study.search_space == {"fast": [3, 5, 8], "slow": [15, 25]}
    assert [(run.config["strategy"]["fast"], run.config["strategy"]["slow"]) for run in trials] == [(5, 15), (3, 15), (8, 15), (5, 25)]
    assert all(run.status == Status.NEW and run.mode == "backtest" and run.copied_from_id == base.pk for run in trials)
    assert trials[0].config["environment"] == base.config["environment"]
    assert study.created_by == user and study.strategy_version_id == base.strategy_version_id


def test_create_validates_every_trial_and_stores_nothing_on_error():
    msft_with_bars()
    base = sma_base_run()
    runs_before = Run.objects.count()
    with pytest.raises(StudyError) as caught:
        study_create(user=None, base_run=base, description="", space_spec={"fast": "0, 5, 7", "symbol": "MSFT, NOPE"}, start=False)
    errors = caught.value.errors
    assert errors["description"].startswith("required")
    assert "value 0" in errors["fast"] and "at least 1" in errors["fast"]
    assert "NOPE" in errors["symbol"]
    assert Study.objects.count() == 0 and Run.objects.count() == runs_before


def test_create_refuses_a_grid_over_the_limit_and_a_non_backtest_base():
    msft_with_bars()
    base = sma_base_run()
    with pytest.raises(StudyError, match="more than the 500"):
        study_create(user=None, base_run=base, description="huge", space_spec={"fast": "1:30:1", "slow": "31:60:1"}, mode=GRID)
    paper = RunFactory(strategy_version=base.strategy_version, mode="paper", config={"environment": {}, "strategy": {}, "core": {}})
    with pytest.raises(StudyError, match="must be a Backtest run"):
        study_create(user=None, base_run=paper, description="paper", space_spec={"fast": "3"})
    assert Study.objects.count() == 0


def test_a_viewer_cannot_create_or_kill_a_study():
    msft_with_bars()
    base = sma_base_run()
    with pytest.raises(PermissionDenied):
        study_create(user=UserFactory(), base_run=base, description="no role", space_spec={"fast": "3"})
    study = study_create(user=None, base_run=base, description="by the system", space_spec={"fast": "3"}, start=False)
    study_start(study=study, user=None, enqueue=False)
    with pytest.raises(PermissionDenied):
        study_kill(study=study, user=UserFactory())


def test_start_puts_every_trial_in_starting_and_the_trials_complete_the_study():
    msft_with_bars()
    study = study_create(user=None, base_run=sma_base_run(), description="sweep", space_spec={"fast": "3, 8"}, start=False)
    study = study_start(study=study, user=None, enqueue=False)
    assert study.status == StudyStatus.RUNNING and study.started_at is not None
    assert set(study.trials.values_list("status", flat=True)) == {Status.STARTING}
    run_ids = list(study.trials.order_by("pk").values_list("pk", flat=True))
    for run_id in run_ids[:-1]:
        study_trial_execute(run_id=run_id, study_id=study.pk)
        study.refresh_from_db()
        assert study.status == StudyStatus.RUNNING
    study_trial_execute(run_id=run_ids[-1], study_id=study.pk)
    study.refresh_from_db()
    assert study.status == StudyStatus.COMPLETE and study.finished_at is not None
    assert set(study.trials.values_list("status", flat=True)) == {Status.COMPLETE}
    assert all("sharpe" in run.metrics and "total_return" in run.metrics for run in study.trials.all())
    # Delivered twice: nothing more happens.
    assert study_trial_execute(run_id=run_ids[0], study_id=study.pk) is None


def test_a_failed_trial_does_not_fail_the_study_but_all_failed_is_an_error():
    msft_with_bars()
    version = StrategyVersionFactory(files={"strategy.py": FAILING_STRATEGY, "config_schema.json": FAILING_SCHEMA})
    base = RunFactory(strategy_version=version, config={"environment": {"start": "2017-01-03", "end": "2017-02-28"}, "strategy": {"symbol": "MSFT", "boom": 0}, "core": {}})
    study = study_create(user=None, base_run=base, description="one fails", space_spec={"boom": "1"})
    for run_id in study.trials.values_list("pk", flat=True):
        study_trial_execute(run_id=run_id, study_id=study.pk)
    study.refresh_from_db()
    assert sorted(study.trials.values_list("status", flat=True)) == [Status.COMPLETE, Status.ERROR]
    assert study.status == StudyStatus.COMPLETE
    assert Issue.objects.filter(run__study=study).exists()

    failing_base = RunFactory(strategy_version=version, config={**base.config, "strategy": {"symbol": "MSFT", "boom": 1}})
    all_fail = study_create(user=None, base_run=failing_base, description="all fail", space_spec={"boom": "2, 3"})
    for run_id in all_fail.trials.values_list("pk", flat=True):
        study_trial_execute(run_id=run_id, study_id=all_fail.pk)
    all_fail.refresh_from_db()
    assert all_fail.status == StudyStatus.ERROR


def test_kill_stops_the_unfinished_trials_and_keeps_the_finished_ones():
    msft_with_bars()
    study = study_create(user=None, base_run=sma_base_run(), description="to kill", space_spec={"fast": "2, 3, 4"})
    first, second, *rest = study.trials.order_by("pk")
    study_trial_execute(run_id=first.pk, study_id=study.pk)
    Run.objects.filter(pk=second.pk).update(status=Status.RUNNING)  # as a worker holds it
    user = operator()
    study = study_kill(study=study, user=user)
    assert study.status == StudyStatus.STOPPED and study.kill_requested_at is not None
    assert Run.objects.get(pk=first.pk).status == Status.COMPLETE
    assert Run.objects.get(pk=second.pk).kill_requested_at is not None
    assert {run.status for run in Run.objects.filter(pk__in=[run.pk for run in rest])} == {Status.STOPPED}
    assert RunEvent.objects.filter(run_id=rest[0].pk, kind=RunEvent.Kind.KILL_REQUESTED, actor=user).exists()
    # The killed trials' tasks arrive later and do nothing; the study stays stopped.
    study_trial_execute(run_id=rest[0].pk, study_id=study.pk)
    study.refresh_from_db()
    assert study.status == StudyStatus.STOPPED
    with pytest.raises(RunActionError, match="the study is stopped"):
        study_kill(study=study, user=user)


def test_finish_is_a_compare_and_set_that_waits_for_the_last_trial():
    msft_with_bars()
    study = study_create(user=None, base_run=sma_base_run(), description="cas", space_spec={"fast": "3"})
    trials = list(study.trials.order_by("pk"))
    Run.objects.filter(pk=trials[0].pk).update(status=Status.COMPLETE)
    assert study_finish_if_done(study_id=study.pk) is False
    Run.objects.filter(pk=trials[1].pk).update(status=Status.ERROR)
    assert study_finish_if_done(study_id=study.pk) is True
    assert study_finish_if_done(study_id=study.pk) is False  # the second caller finds it done
    study.refresh_from_db()
    assert study.status == StudyStatus.COMPLETE


def test_the_trials_of_a_study_run_on_the_bars_loaded_for_its_first_trial():
    from securities.models import Bar

    security = msft_with_bars()
    base = sma_base_run()
    study = study_create(user=None, base_run=base, description="one dataset", space_spec={"fast": "3, 8"})
    first, *others = study.trials.order_by("pk")
    study_trial_execute(run_id=first.pk, study_id=study.pk)
    # A data fix lands while the study runs: its remaining trials keep the data it started with.
    Bar.objects.filter(security=security, time__gte=datetime(2017, 3, 1, tzinfo=UTC)).delete()
    for run in others:
        study_trial_execute(run_id=run.pk, study_id=study.pk)
    first.refresh_from_db()
    assert first.bars_processed == 80
    assert set(Run.objects.filter(study=study).values_list("bars_processed", flat=True)) == {80}
    # A run outside the study reads the bars as they are now.
    outside = RunFactory(strategy_version=base.strategy_version, status=Status.STARTING, config=base.config)
    run_execute(run_id=outside.pk)
    outside.refresh_from_db()
    assert outside.status == Status.COMPLETE and outside.bars_processed == Bar.objects.filter(security=security).count() < 80
