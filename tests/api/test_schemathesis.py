"""Property-based run of every operation in /api/schema/ (schemathesis, in-process against the
Django WSGI app, authenticated by an Operator's token): no input makes the server fail, and every
answer matches the schema (status codes, content types, bodies). Bounded to a few examples per
operation so the whole file stays well under two minutes."""

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from runs.models import Status
from runs.study_services import study_create
from tests.api.factories import IssueFactory, LogEntryFactory, RoleUserFactory
from tests.portfolio.factories import OrderFactory, PositionFactory, equity_points_store
from tests.runs.factories import RunFactory
from tests.strategies.factories import StrategyFactory, StrategyVersionFactory, bundle_files

MAX_EXAMPLES = 8
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def in_process_wsgi(db):
    """Requests through the WSGI app share the test's transaction, so Django must not close the
    connection after each one (what its own test client arranges too)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(in_process_wsgi):
    """Objects for the fuzzed ids to land on: runs in each state with results, a strategy, and a
    study of a crossover run."""
    version = StrategyVersionFactory()
    StrategyVersionFactory(strategy=version.strategy)
    runs = [RunFactory(strategy_version=version, status=status) for status in Status.values]
    for run in runs[1:]:
        OrderFactory(run=run)
        PositionFactory(run=run)
        equity_points_store(run=run, times=[run.created_at], values=[100000])
        IssueFactory(run=run)
        LogEntryFactory(run=run)
    files = bundle_files("crossover_a")
    crossover = StrategyVersionFactory(strategy=StrategyFactory(files=files), files=files)
    config = {"environment": {"start": "2017-01-03", "end": "2017-03-31"}, "strategy": {"symbol": "MSFT", "fast": 5, "slow": 15}, "core": {}}
    base_run = RunFactory(strategy_version=crossover, status=Status.COMPLETE, config=config)
    study = study_create(user=None, base_run=base_run, description="seed", space_spec={"fast": [3, 8]}, start=False)
    runs.append(base_run)
    user = RoleUserFactory(role="Operator")
    user.groups.add(*user.groups.model.objects.filter(name="Strategy author"))
    return {
        "token": Token.objects.create(user=user).key,
        "run_ids": [run.pk for run in runs],
        "strategy_id": version.strategy_id,
        "version_id": version.pk,
        "study_id": study.pk,
    }


@pytest.fixture
def api_schema(in_process_wsgi):
    return schemathesis.openapi.from_wsgi("/api/schema/", application)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_never_fails_and_answers_as_documented(case, seeded):
    # Most generated ids are pointed at real objects, so bodies reach the services too; ids
    # divisible by 3 (0 included) are left to find nothing.
    path = case.path_parameters or {}
    if isinstance(path.get("run_id"), int) and path["run_id"] % 3:
        path["run_id"] = seeded["run_ids"][path["run_id"] % len(seeded["run_ids"])]
    for name in ("strategy_id", "study_id"):
        if isinstance(path.get(name), int) and path[name] % 3:
            path[name] = seeded[name]
    body = case.body if isinstance(case.body, dict) else {}
    if isinstance(body.get("strategy_version"), int) and body["strategy_version"] % 3:
        body["strategy_version"] = seeded["version_id"]
    if isinstance(body.get("base_run"), int) and body["base_run"] % 3:
        body["base_run"] = seeded["run_ids"][-1]
    response = case.call(headers={"Authorization": f"Token {seeded['token']}"})
    case.validate_response(response, checks=CHECKS)
