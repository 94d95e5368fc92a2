"""Races that only a real database with row locks can show. Depends on PostgreSQL (skipped on
SQLite, which serialises writers for the whole file) and on the test broker for queue counts."""

import threading

import pytest
from django.db import connection, connections

from runs.execution import run_finish
from runs.models import RunEvent, Status
from runs.services import RunActionError, run_kill, run_start
from tests.runs.factories import RunFactory
from tests.securities.factories import SecurityFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture(autouse=True)
def needs_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (set DATABASE_URL)")


def queued_messages(queue: str) -> int:
    from config.celery import app

    with app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(queue=queue, passive=False, durable=True, auto_delete=False).message_count


def purge(queue: str) -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)


def race(*callables):
    """Run the callables at the same instant in threads; return (results, errors)."""
    barrier = threading.Barrier(len(callables))
    results, errors = [None] * len(callables), [None] * len(callables)

    def worker(index, fn):
        try:
            barrier.wait()
            results[index] = fn()
        except Exception as exc:  # collected for the assertions
            errors[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, fn)) for i, fn in enumerate(callables)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results, errors


def test_two_simultaneous_starts_enqueue_one_task():
    SecurityFactory(symbol="MSFT", asset_type="equity")
    purge("backtests")
    for _ in range(5):  # a few rounds: a race that passes once by luck should not pass five times
        run = RunFactory()
        results, errors = race(lambda run=run: run_start(run=run, user=None), lambda run=run: run_start(run=run, user=None))
        succeeded = [r for r in results if r is not None]
        refused = [e for e in errors if e is not None]
        assert len(succeeded) == 1, errors
        assert len(refused) == 1 and isinstance(refused[0], RunActionError)
        run.refresh_from_db()
        assert run.status == Status.STARTING
        assert run.events.filter(kind=RunEvent.Kind.START_REQUESTED).count() == 1
    assert queued_messages("backtests") == 5
    purge("backtests")


def test_kill_racing_completion_ends_in_exactly_one_finished_state():
    SecurityFactory(symbol="MSFT", asset_type="equity")
    for _ in range(5):
        run = RunFactory(status=Status.RUNNING)
        results, errors = race(lambda run=run: run_finish(run_id=run.pk, status=Status.COMPLETE), lambda run=run: run_kill(run=run, user=None))
        run.refresh_from_db()
        assert run.status == Status.COMPLETE
        assert results[0] is True
        # The kill either landed first (recorded, then completion won) or found the run finished.
        assert errors[1] is None or "Cannot kill: the run is complete" in str(errors[1])
        assert run.events.filter(kind=RunEvent.Kind.COMPLETED).count() == 1
        assert run.finished_at is not None
