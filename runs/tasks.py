from celery import shared_task

from runs.execution import run_execute


@shared_task(name="runs.execute_run", acks_late=True, ignore_result=True)
def execute_run(run_id: int) -> None:
    run_execute(run_id=run_id)


@shared_task(name="runs.execute_trial", acks_late=True, ignore_result=True)
def execute_trial(run_id: int, study_id: int) -> None:
    """One Optimize trial, on the `studies` queue (runs/study_services.py enqueues a group)."""
    from runs.study_services import study_trial_execute

    study_trial_execute(run_id=run_id, study_id=study_id)
