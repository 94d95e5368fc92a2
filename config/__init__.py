"""Project configuration: settings, URLs, the Celery app (config/celery.py).

The Celery app is not imported here, as Django's Celery guide suggests, but by runs/tasks.py,
the one module that defines tasks: every process that sends or runs a task imports it first,
while the processes that do neither (`manage.py backtest` without --via-worker, migrate, the
shell) skip Celery's tenth of a second of imports. `celery -A config` finds config.celery itself.
"""
