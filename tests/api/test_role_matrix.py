"""Every endpoint × every kind of caller: the role table of product.md §13 as the API applies it.
Reads need any login; run and study actions the Operator role (the Live trader has it too);
Publish the Strategy author role; nobody logged in gets 401; a token acts as its user."""

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from runs.models import Status
from runs.study_services import study_create
from tests.api.factories import RoleUserFactory
from tests.portfolio.factories import OrderFactory
from tests.runs.factories import RunFactory
from tests.strategies.factories import StrategyFactory, StrategyVersionFactory, bundle_files

CALLERS = ["viewer", "operator", "live_trader", "author", "no_role", "anonymous", "token"]
ROLE_GROUPS = {"viewer": "Viewer", "operator": "Operator", "live_trader": "Live trader", "author": "Strategy author", "no_role": None}
OPERATORS = {"operator", "live_trader", "token"}
CONFIG = {"environment": {"start": "2017-01-03", "end": "2017-03-31"}, "strategy": {"symbol": "MSFT", "fast": 5, "slow": 15}, "core": {}}


def _client(caller: str) -> APIClient:
    client = APIClient()
    if caller == "token":
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=RoleUserFactory(role='Operator')).key}")
    elif caller != "anonymous":
        client.force_login(RoleUserFactory(role=ROLE_GROUPS[caller]))
    return client


@pytest.fixture
def world(db):
    files = bundle_files("crossover_a")
    version = StrategyVersionFactory(strategy=StrategyFactory(files=files), files=files)
    now = timezone.now()
    complete = RunFactory(strategy_version=version, status=Status.COMPLETE, config=CONFIG, start_requested_at=now, started_at=now)
    OrderFactory(run=complete)
    study = study_create(user=None, base_run=complete, description="seed", space_spec={"fast": [3, 8]}, start=False)
    return {"version": version, "complete": complete, "study": study}


READS = [
    "/api/v1/runs/", "/api/v1/runs/{run}/", "/api/v1/runs/{run}/performance", "/api/v1/runs/{run}/equity",
    "/api/v1/runs/{run}/positions", "/api/v1/runs/{run}/orders", "/api/v1/runs/{run}/orders.csv", "/api/v1/runs/{run}/issues",
    "/api/v1/runs/{run}/logs", "/api/v1/strategies/", "/api/v1/strategies/{strategy}/", "/api/v1/strategies/{strategy}/versions/",
    "/api/v1/strategies/{strategy}/versions/1/", "/api/v1/securities/validate?symbol=MSFT&asset_type=equity",
    "/api/v1/securities/search?q=MS", "/api/v1/studies/", "/api/v1/studies/{study}/", "/api/v1/studies/{study}/trials",
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("path", READS)
def test_reads(world, caller, path):
    url = path.format(run=world["complete"].pk, strategy=world["version"].strategy_id, study=world["study"].pk)
    assert _client(caller).get(url).status_code == (401 if caller == "anonymous" else 200)


def _new_run(world):
    return RunFactory(strategy_version=world["version"], config=CONFIG)


def _running_run(world):
    now = timezone.now()
    return RunFactory(strategy_version=world["version"], status=Status.RUNNING, config=CONFIG, start_requested_at=now, started_at=now)


def _running_study(world):
    # Started: its trials are enqueued on commit, which these tests never reach.
    return study_create(user=None, base_run=world["complete"], description="running", space_spec={"slow": [25]})


# (name, method, url builder, body, status when allowed, who is allowed)
ACTIONS = [
    ("create", "post", lambda w: "/api/v1/runs/", lambda w: {"strategy_version": w["version"].pk, "description": "x", "config": CONFIG}, 201, OPERATORS),
    ("edit", "patch", lambda w: f"/api/v1/runs/{_new_run(w).pk}/", lambda w: {"description": "edited"}, 200, OPERATORS),
    ("start", "post", lambda w: f"/api/v1/runs/{_new_run(w).pk}/start", lambda w: {}, 200, OPERATORS),
    ("kill", "post", lambda w: f"/api/v1/runs/{_running_run(w).pk}/kill", lambda w: {}, 200, OPERATORS),
    ("copy", "post", lambda w: f"/api/v1/runs/{w['complete'].pk}/copy", lambda w: {}, 201, OPERATORS),
    ("reset", "post", lambda w: f"/api/v1/runs/{w['complete'].pk}/reset", lambda w: {}, 200, OPERATORS),
    ("publish", "post", lambda w: f"/api/v1/strategies/{StrategyFactory(files=bundle_files('crossover_b')).pk}/publish", lambda w: {}, 201, {"author"}),
    ("study", "post", lambda w: "/api/v1/studies/", lambda w: {"base_run": w["complete"].pk, "description": "x", "search_space": {"fast": [3]}}, 201, OPERATORS),
    ("study_kill", "post", lambda w: f"/api/v1/studies/{_running_study(w).pk}/kill", lambda w: {}, 200, OPERATORS),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("action", ACTIONS, ids=[action[0] for action in ACTIONS])
def test_actions(world, caller, action, django_capture_on_commit_callbacks):
    _name, method, url, body, allowed_status, allowed = action
    with django_capture_on_commit_callbacks():
        response = getattr(_client(caller), method)(url(world), body(world))
    expected = 401 if caller == "anonymous" else allowed_status if caller in allowed else 403
    assert response.status_code == expected, response.json()
