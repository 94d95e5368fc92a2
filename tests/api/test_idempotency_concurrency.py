"""Two retries of one request arriving at the same instant (a client timing out and resending):
the key is claimed in the database, so exactly one acts. Depends on PostgreSQL (skipped on
SQLite, which serialises writers) and on the test broker for the queue count."""

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from runs.models import RunEvent, Status
from tests.api.factories import RoleUserFactory
from tests.runs.factories import RunFactory
from tests.runs.test_concurrency import purge, queued_messages, race

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture(autouse=True)
def needs_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (set DATABASE_URL)")


def _start(run_id: int, key: str, token: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.post(f"/api/v1/runs/{run_id}/start", HTTP_IDEMPOTENCY_KEY=key)
    return response.status_code, response.json()


def test_simultaneous_retries_with_one_key_start_the_run_once():
    token = Token.objects.create(user=RoleUserFactory(role="Operator")).key
    purge("backtests")
    for attempt in range(5):
        run = RunFactory()
        key = f"retry-{attempt}"
        results, errors = race(lambda run=run, key=key: _start(run.pk, key, token), lambda run=run, key=key: _start(run.pk, key, token))
        assert errors == [None, None], errors
        acted = [body for status, body in results if status == 200]
        # The loser either saw the first answer (replayed) or the key still being answered.
        assert all(status == 200 or body["code"] == "idempotency_key_in_progress" for status, body in results), results
        assert acted and all(body["status"] == Status.STARTING for body in acted)
        run.refresh_from_db()
        assert run.status == Status.STARTING
        assert run.events.filter(kind=RunEvent.Kind.START_REQUESTED).count() == 1
    assert queued_messages("backtests") == 5
    purge("backtests")
