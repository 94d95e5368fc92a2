"""/api/v1/studies/...: Optimize studies over runs/study_services.py and study_selectors.py —
create (Operator; every trial validated, nothing stored on error), detail, the trial table and
kill, each refusal in the error shape."""

import pytest

from issues.models import AuditEvent
from runs.models import Run, Status, Study, StudyStatus
from tests.api.conftest import assert_error
from tests.runs.factories import RunFactory
from tests.strategies.factories import StrategyFactory, StrategyVersionFactory, bundle_files

BASE_CONFIG = {"environment": {"start": "2017-01-03", "end": "2017-03-31"}, "strategy": {"symbol": "MSFT", "fast": 5, "slow": 15}, "core": {}}


@pytest.fixture
def base_run(db):
    files = bundle_files("crossover_a")
    version = StrategyVersionFactory(strategy=StrategyFactory(files=files), files=files)
    return RunFactory(strategy_version=version, status=Status.COMPLETE, config=BASE_CONFIG)


def _create(client, run, **overrides):
    payload = {"base_run": run.pk, "description": "windows", "search_space": {"fast": [3, 5, 8], "slow": "15:25:10"}, **overrides}
    return client.post("/api/v1/studies/", payload)


def test_an_operator_creates_a_study_whose_trials_start(as_role, base_run, django_capture_on_commit_callbacks):
    client = as_role("operator")
    with django_capture_on_commit_callbacks() as callbacks:
        response = _create(client, base_run)
    assert response.status_code == 201, response.json()
    body = response.json()
    study = Study.objects.get(pk=body["id"])
    assert (body["status"], body["trial_count"], body["search_space"]) == (StudyStatus.RUNNING, 4, {"fast": [3, 5, 8], "slow": [15, 25]})
    assert study.created_by == client.user
    assert set(Run.objects.filter(study=study).values_list("status", flat=True)) == {Status.STARTING}
    assert len(callbacks) == 1  # one Celery group for all the trials


def test_a_token_creates_a_study(token_client, base_run, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        assert _create(token_client, base_run).status_code == 201


@pytest.mark.parametrize("role", ["viewer", "author", None])
def test_creating_a_study_needs_the_operator_role(as_role, base_run, role):
    assert_error(_create(as_role(role), base_run), 403, "permission_denied")
    assert not Study.objects.exists()
    assert AuditEvent.objects.filter(action="study.create", allowed=False).exists()


def test_an_invalid_study_is_a_400_naming_each_parameter_and_stores_nothing(as_role, base_run):
    client = as_role("operator")
    body = assert_error(_create(client, base_run, description="", search_space={"fast": "0, 5"}), 400, "invalid_study", field="fast")
    assert "at least 1" in body["field_errors"]["fast"] and body["field_errors"]["description"].startswith("required")
    body = assert_error(_create(client, base_run, search_space={"nonsense": [1]}), 400, "invalid_study", field="nonsense")
    assert "unknown parameter" in body["field_errors"]["nonsense"]
    assert not Study.objects.exists() and Run.objects.count() == 1


def test_an_unknown_base_run_or_metric_is_a_400(as_role, base_run):
    client = as_role("operator")
    assert_error(_create(client, base_run, base_run=424242), 400, "invalid", field="base_run")
    assert_error(_create(client, base_run, objective_metric="luck"), 400, "invalid", field="objective_metric")


def test_creating_again_with_the_same_idempotency_key_makes_one_study(as_role, base_run, django_capture_on_commit_callbacks):
    client = as_role("operator")
    payload = {"base_run": base_run.pk, "description": "once", "search_space": {"fast": [3, 8]}}
    with django_capture_on_commit_callbacks() as callbacks:
        first = client.post("/api/v1/studies/", payload, HTTP_IDEMPOTENCY_KEY="study-1")
        retry = client.post("/api/v1/studies/", payload, HTTP_IDEMPOTENCY_KEY="study-1")
    assert first.status_code == retry.status_code == 201 and first.json() == retry.json()
    assert Study.objects.count() == 1 and len(callbacks) == 1


@pytest.mark.parametrize("role", ["viewer", "operator", "live_trader", "author", None])
def test_every_role_reads_studies_and_their_trials(as_role, base_run, role, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        study_id = _create(as_role("operator"), base_run).json()["id"]
    client = as_role(role)
    assert [study["id"] for study in client.get("/api/v1/studies/").json()["results"]] == [study_id]
    detail = client.get(f"/api/v1/studies/{study_id}/").json()
    assert (detail["trial_count"], detail["finished_trials"], detail["progress"]) == (4, 0, 0)
    table = client.get(f"/api/v1/studies/{study_id}/trials").json()
    assert table["parameters"] == ["fast", "slow"] and table["best"] is None
    assert [trial["values"] for trial in table["trials"]] == [
        {"fast": 5, "slow": 15}, {"fast": 3, "slow": 15}, {"fast": 8, "slow": 15}, {"fast": 5, "slow": 25},
    ]
    assert [trial["baseline"] for trial in table["trials"]] == [True, False, False, False]


def test_the_trial_table_sorts_and_names_the_best_trial(as_role, base_run, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        study_id = _create(as_role("operator"), base_run, search_space={"fast": [3, 8]}).json()["id"]
    for sharpe, run in zip([0.5, 1.5, 1.0], Run.objects.filter(study_id=study_id).order_by("pk"), strict=True):
        Run.objects.filter(pk=run.pk).update(status=Status.COMPLETE, metrics={"sharpe": sharpe})
    client = as_role("viewer")
    table = client.get(f"/api/v1/studies/{study_id}/trials?sort=sharpe").json()
    assert [trial["metrics"]["sharpe"] for trial in table["trials"]] == [1.5, 1.0, 0.5]
    assert table["best"] == table["trials"][0]["run"] and table["trials"][0]["best"] is True
    ascending = client.get(f"/api/v1/studies/{study_id}/trials?sort=fast&direction=asc").json()
    assert [trial["values"]["fast"] for trial in ascending["trials"]] == [3, 5, 8]
    assert_error(client.get(f"/api/v1/studies/{study_id}/trials?direction=up"), 400, "invalid", field="direction")


def test_kill_stops_a_running_study_and_its_trials(as_role, base_run, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        study_id = _create(as_role("operator"), base_run).json()["id"]
    assert_error(as_role("viewer").post(f"/api/v1/studies/{study_id}/kill"), 403, "permission_denied")
    client = as_role("operator")
    response = client.post(f"/api/v1/studies/{study_id}/kill")
    assert response.status_code == 200 and response.json()["status"] == StudyStatus.STOPPED
    assert set(Run.objects.filter(study_id=study_id).values_list("status", flat=True)) == {Status.STOPPED}
    assert_error(client.post(f"/api/v1/studies/{study_id}/kill"), 409, "conflict")


def test_an_unknown_study_is_a_404_and_anonymous_is_401(as_role):
    assert_error(as_role("viewer").get("/api/v1/studies/424242/"), 404, "not_found")
    assert_error(as_role("viewer").get("/api/v1/studies/424242/trials"), 404, "not_found")
    assert_error(as_role("anonymous").get("/api/v1/studies/"), 401, "not_authenticated")
