"""`Idempotency-Key` on state-changing calls: a retry with the same key repeats the first answer
without acting again; the same key with another request is a 422; keys are per user and are
forgotten after 24 hours; a server error forgets the key so the retry acts."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIRequestFactory, force_authenticate

from config.api import IDEMPOTENCY_ABANDONED_AFTER, ApiView, idempotency_keys_expire
from issues.models import ApiIdempotencyKey, AuditEvent
from runs.models import Run, RunEvent, Status
from tests.api.conftest import assert_error
from tests.api.factories import RoleUserFactory
from tests.runs.factories import RunFactory
from tests.strategies.factories import StrategyVersionFactory

CONFIG = {"environment": {"start": "2017-01-03", "end": "2017-03-31"}, "strategy": {"symbol": "MSFT"}, "core": {}}


def test_a_repeated_start_with_the_same_key_answers_the_first_response_and_enqueues_one_task(as_role, django_capture_on_commit_callbacks):
    run = RunFactory(config=CONFIG)
    client = as_role("operator")
    with django_capture_on_commit_callbacks() as callbacks:
        first = client.post(f"/api/v1/runs/{run.pk}/start", HTTP_IDEMPOTENCY_KEY="nightly-2026-11-24")
        retry = client.post(f"/api/v1/runs/{run.pk}/start", HTTP_IDEMPOTENCY_KEY="nightly-2026-11-24")
    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json() and retry.json()["status"] == Status.STARTING
    assert retry["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
    assert len(callbacks) == 1
    assert RunEvent.objects.filter(run=run, kind=RunEvent.Kind.START_REQUESTED).count() == 1
    assert AuditEvent.objects.filter(action="run.start", allowed=True).count() == 1


def test_without_a_key_a_second_start_is_a_conflict(as_role):
    run = RunFactory(config=CONFIG)
    client = as_role("operator")
    assert client.post(f"/api/v1/runs/{run.pk}/start").status_code == 200
    assert_error(client.post(f"/api/v1/runs/{run.pk}/start"), 409, "conflict")


def test_a_repeated_create_makes_one_run(as_role):
    version = StrategyVersionFactory()
    client = as_role("operator")
    payload = {"strategy_version": version.pk, "description": "batch", "config": CONFIG}
    first = client.post("/api/v1/runs/", payload, HTTP_IDEMPOTENCY_KEY="k1")
    retry = client.post("/api/v1/runs/", payload, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == retry.status_code == 201 and first.json()["id"] == retry.json()["id"]
    assert Run.objects.count() == 1


def test_a_refusal_is_repeated_too(as_role):
    run = RunFactory(status=Status.COMPLETE)
    client = as_role("operator")
    first = assert_error(client.post(f"/api/v1/runs/{run.pk}/kill", HTTP_IDEMPOTENCY_KEY="k"), 409, "conflict")
    assert client.post(f"/api/v1/runs/{run.pk}/kill", HTTP_IDEMPOTENCY_KEY="k").json() == first


def test_the_same_key_with_another_body_or_path_is_a_422(as_role):
    version = StrategyVersionFactory()
    client = as_role("operator")
    client.post("/api/v1/runs/", {"strategy_version": version.pk, "description": "one", "config": CONFIG}, HTTP_IDEMPOTENCY_KEY="k")
    body = assert_error(
        client.post("/api/v1/runs/", {"strategy_version": version.pk, "description": "two", "config": CONFIG}, HTTP_IDEMPOTENCY_KEY="k"),
        422,
        "idempotency_key_reused",
    )
    assert "use a new key" in body["message"]
    run = Run.objects.get()
    assert_error(client.post(f"/api/v1/runs/{run.pk}/start", HTTP_IDEMPOTENCY_KEY="k"), 422, "idempotency_key_reused")
    assert Run.objects.get().status == Status.NEW


def test_keys_are_per_user(as_role):
    first_run, second_run = RunFactory(config=CONFIG), RunFactory(config=CONFIG)
    one, other = as_role("operator"), as_role("operator")
    assert one.post(f"/api/v1/runs/{first_run.pk}/start", HTTP_IDEMPOTENCY_KEY="shared").status_code == 200
    assert other.post(f"/api/v1/runs/{second_run.pk}/start", HTTP_IDEMPOTENCY_KEY="shared").status_code == 200
    assert Run.objects.filter(status=Status.STARTING).count() == 2


def test_a_key_expires_after_24_hours(as_role):
    run = RunFactory(config=CONFIG)
    client = as_role("operator")
    client.post(f"/api/v1/runs/{run.pk}/start", HTTP_IDEMPOTENCY_KEY="old")
    ApiIdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, minutes=1))
    # Forgotten: the retry acts again, and the run, already starting, refuses a second start.
    assert_error(client.post(f"/api/v1/runs/{run.pk}/start", HTTP_IDEMPOTENCY_KEY="old"), 409, "conflict")


def test_expiry_forgets_only_old_keys():
    user = RoleUserFactory()
    fresh = ApiIdempotencyKey.objects.create(user=user, key="fresh", request_fingerprint="f", method="POST", path="/x")
    old = ApiIdempotencyKey.objects.create(user=user, key="old", request_fingerprint="f", method="POST", path="/x")
    ApiIdempotencyKey.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=25))
    assert idempotency_keys_expire() == 1
    assert list(ApiIdempotencyKey.objects.all()) == [fresh]


def test_a_key_still_being_answered_is_a_409(as_role):
    run = RunFactory(config=CONFIG)
    client = as_role("operator")
    client.post(f"/api/v1/runs/{run.pk}/start", HTTP_IDEMPOTENCY_KEY="busy")
    ApiIdempotencyKey.objects.update(response_status=None, response_body=None)
    assert_error(client.post(f"/api/v1/runs/{run.pk}/start", HTTP_IDEMPOTENCY_KEY="busy"), 409, "idempotency_key_in_progress")


def test_a_key_whose_first_request_died_unanswered_is_taken_over_by_the_retry(as_role):
    """The first request's process died between claiming the key and answering: after
    IDEMPOTENCY_ABANDONED_AFTER the retry acts (once) instead of getting 409 for a day."""
    run = RunFactory(config=CONFIG)
    client = as_role("operator")
    assert client.post(f"/api/v1/runs/{run.pk}/start", HTTP_IDEMPOTENCY_KEY="died").status_code == 200
    # As if that request had died after claiming the key, before acting and answering:
    Run.objects.filter(pk=run.pk).update(status=Status.NEW)
    ApiIdempotencyKey.objects.filter(key="died").update(response_status=None, response_body=None)
    assert_error(client.post(f"/api/v1/runs/{run.pk}/start", HTTP_IDEMPOTENCY_KEY="died"), 409, "idempotency_key_in_progress")

    ApiIdempotencyKey.objects.filter(key="died").update(created_at=timezone.now() - IDEMPOTENCY_ABANDONED_AFTER - timedelta(seconds=1))
    taken_over = client.post(f"/api/v1/runs/{run.pk}/start", HTTP_IDEMPOTENCY_KEY="died")
    assert taken_over.status_code == 200 and not taken_over.has_header("Idempotent-Replayed")
    assert Run.objects.get(pk=run.pk).status == Status.STARTING
    replayed = client.post(f"/api/v1/runs/{run.pk}/start", HTTP_IDEMPOTENCY_KEY="died")
    assert replayed["Idempotent-Replayed"] == "true" and replayed.json() == taken_over.json()


def test_an_overlong_key_is_a_400(as_role):
    run = RunFactory(config=CONFIG)
    assert_error(as_role("operator").post(f"/api/v1/runs/{run.pk}/start", HTTP_IDEMPOTENCY_KEY="k" * 256), 400, "invalid_idempotency_key")
    assert Run.objects.get().status == Status.NEW


def test_reads_ignore_the_key(as_role):
    as_role("viewer").get("/api/v1/runs/", HTTP_IDEMPOTENCY_KEY="k")
    assert not ApiIdempotencyKey.objects.exists()


class Exploding(ApiView):
    """An endpoint failing the way a bug would."""

    calls = 0

    def post(self, request):
        Exploding.calls += 1
        raise RuntimeError("a bug")


def test_a_server_error_is_a_500_in_the_error_shape_and_forgets_the_key(db):
    user = RoleUserFactory(role="Operator")
    view = Exploding.as_view()
    for _attempt in range(2):
        request = APIRequestFactory().post("/api/v1/exploding", {}, format="json", HTTP_IDEMPOTENCY_KEY="retry-me")
        force_authenticate(request, user=user)
        response = view(request)
        response.render()
        assert_error(response, 500, "internal_error")
    assert Exploding.calls == 2
    assert not ApiIdempotencyKey.objects.exists()


@pytest.mark.parametrize("path", ["/api/v1/runs/", "/api/v1/strategies/1/publish"])
def test_anonymous_with_a_key_is_still_a_401(as_role, path):
    assert_error(as_role("anonymous").post(path, {}, HTTP_IDEMPOTENCY_KEY="k"), 401, "not_authenticated")
    assert not ApiIdempotencyKey.objects.exists()
