import logging
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection

import config.celery  # noqa: F401 - the app these shared tasks are sent with (see config/__init__.py)
from runs.execution import run_execute, runs_stale_sweep

logger = logging.getLogger(__name__)


@shared_task(name="runs.execute_run", acks_late=True, ignore_result=True)
def execute_run(run_id: int) -> None:
    """No time limit on any queue: a Paper or Live run (queue `live`) runs until killed."""
    run_execute(run_id=run_id)


@shared_task(name="runs.execute_trial", acks_late=True, ignore_result=True)
def execute_trial(run_id: int, study_id: int) -> None:
    """One Optimize trial, on the `studies` queue (runs/study_services.py enqueues a group)."""
    from runs.study_services import study_trial_execute

    study_trial_execute(run_id=run_id, study_id=study_id)


# Every worker sweeps for runs whose worker died (runs.execution.runs_stale_sweep): at start,
# then every RUN_SWEEP_SECONDS, in a thread beside the tasks. No beat process is needed, and
# while any worker lives no run stays `running` with nobody behind it.
_sweeper_stop = threading.Event()


def _sweep_forever() -> None:
    while True:
        try:
            close_old_connections()
            runs_stale_sweep()
        except Exception:  # a database hiccup must not end the sweeper
            logger.exception("the stale-run sweep failed; trying again in %s s", settings.RUN_SWEEP_SECONDS)
        finally:
            connection.close()
        if _sweeper_stop.wait(settings.RUN_SWEEP_SECONDS):
            return


@worker_ready.connect
def _start_stale_run_sweeper(**kwargs) -> None:
    threading.Thread(target=_sweep_forever, name="stale-run-sweeper", daemon=True).start()


@worker_shutdown.connect
def _stop_stale_run_sweeper(**kwargs) -> None:
    _sweeper_stop.set()
