"""The Celery app. Queues: `backtests` (runs in Backtest mode), `studies` (Optimize trials),
`live` (Paper and Live runs: long-lived, no time limit)."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("lookout")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue("backtests"), Queue("studies"), Queue("live")]
app.autodiscover_tasks()
