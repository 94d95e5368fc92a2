"""A study end to end through a real Celery worker process: study_create fans the trials out as
a group on the `studies` queue, the worker runs each trial and the last one completes the study.
Depends on: the `celery_worker_process` fixture (it consumes `studies`), the helpers of
test_study_services."""

import pytest

from runs.models import Status, Study, StudyStatus
from runs.studies import GRID
from runs.study_services import study_create
from tests.conftest import wait_for
from tests.runs.test_study_services import msft_with_bars, sma_base_run

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_runs_every_trial_of_a_grid_study_and_completes_it(celery_worker_process):
    msft_with_bars()
    study = study_create(user=None, base_run=sma_base_run(), description="grid on a worker", space_spec={"fast": "3, 5", "slow": "15, 25"}, mode=GRID)
    assert study.trial_count == 4
    finished = wait_for(
        lambda: Study.objects.filter(pk=study.pk, status__in=[StudyStatus.COMPLETE, StudyStatus.ERROR, StudyStatus.STOPPED]).first(),
        timeout=90,
        message=f"study {study.pk} to finish; worker log: {celery_worker_process.log_path}",
    )
    log = celery_worker_process.log_path.read_text()
    assert finished.status == StudyStatus.COMPLETE, log
    assert set(finished.trials.values_list("status", flat=True)) == {Status.COMPLETE}
    assert all(run.metrics.get("final_value") for run in finished.trials.all())
    assert log.count("runs.execute_trial[") >= 4
