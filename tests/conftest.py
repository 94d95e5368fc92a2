"""Shared fixtures. `celery_worker_process` starts a real Celery worker (a separate process, as
in production) on the configured broker — Redis in CI, the filesystem transport otherwise —
against the test database."""

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def plain_static_storage(settings):
    """Production settings use the hashed manifest storage, which needs `collectstatic`; pages
    rendered in tests only need the plain URLs."""
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}


def _test_database_url() -> str:
    settings_dict = connection.settings_dict
    if connection.vendor == "postgresql":
        user = settings_dict.get("USER") or ""
        password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
        auth = f"{user}{password}@" if user else ""
        return f"postgres://{auth}{settings_dict.get('HOST') or '127.0.0.1'}:{settings_dict.get('PORT') or 5432}/{settings_dict['NAME']}"
    return f"sqlite:///{settings_dict['NAME']}"


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """A real worker consuming every queue; yields the Popen. Needs committed data
    (transactional tests), since the worker reads the database through its own connection."""
    from config.celery import app

    with app.connection_for_write() as conn:
        for queue in ("backtests", "studies", "live"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # a queue that was never declared has nothing to purge
                pass
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--queues", "backtests,studies,live",
             "--pool", "solo", "--loglevel", "INFO", "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while "ready." not in log_path.read_text() and time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the Celery worker exited at start:\n{log_path.read_text()}")
        time.sleep(0.2)
    if "ready." not in log_path.read_text():
        process.kill()
        pytest.fail(f"the Celery worker did not become ready in 30 s:\n{log_path.read_text()}")
    process.log_path = log_path
    yield process
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def role_group(name: str):
    """The role's group as migration runs/0002 makes it. Transactional tests flush the tables
    after each test, the migration's groups included, so they are made again when missing."""
    from django.contrib.auth.models import Group, Permission

    roles = importlib.import_module("runs.migrations.0002_roles").ROLES
    group, created = Group.objects.get_or_create(name=name)
    if created:
        for app_label, codename in roles[name]:
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return group


def wait_for(predicate, *, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
