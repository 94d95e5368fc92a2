"""The Celery app. Queues: `backtests` (runs in Backtest mode), `studies` (Optimize trials),
`live` (Paper and Live runs: long-lived, no time limit)."""

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("lookout")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each queue with its own exchange and routing key: left to defaults, all three would bind to
# the default queue's exchange and key, and a message for `live` would land in `backtests`.
app.conf.task_queues = [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ("backtests", "studies", "live")]
app.conf.task_default_exchange = "backtests"
app.conf.task_default_routing_key = "backtests"
app.autodiscover_tasks()
