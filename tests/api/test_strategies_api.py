"""/api/v1/strategies/...: strategies and versions for any login; Publish for Strategy authors."""

import pytest

from issues.models import AuditEvent
from strategies.models import StrategyVersion
from tests.api.conftest import assert_error
from tests.strategies.factories import StrategyFactory, StrategyVersionFactory, bundle_files

READERS = ["viewer", "operator", "live_trader", "author", None]


@pytest.mark.parametrize("role", READERS)
def test_every_role_lists_strategies_with_their_latest_version(as_role, role):
    version = StrategyVersionFactory(strategy__name="Alpha")
    StrategyVersionFactory(strategy=version.strategy)
    StrategyFactory(name="Beta")
    body = as_role(role).get("/api/v1/strategies/").json()
    assert [(item["name"], item["latest_version_number"]) for item in body["results"]] == [("Alpha", 2), ("Beta", None)]


def test_a_token_reads_strategies(token_client):
    StrategyFactory(name="Alpha")
    assert token_client.get("/api/v1/strategies/").json()["count"] == 1


def test_anonymous_cannot_read_strategies(as_role):
    assert_error(as_role("anonymous").get("/api/v1/strategies/"), 401, "not_authenticated")


def test_a_strategy_its_versions_and_one_versions_files_and_schema(as_role):
    first = StrategyVersionFactory(message="first")
    StrategyVersionFactory(strategy=first.strategy, message="second")
    client = as_role("viewer")
    strategy_id = first.strategy_id
    assert client.get(f"/api/v1/strategies/{strategy_id}/").json()["latest_version_number"] == 2
    assert [v["message"] for v in client.get(f"/api/v1/strategies/{strategy_id}/versions/").json()] == ["second", "first"]
    detail = client.get(f"/api/v1/strategies/{strategy_id}/versions/1/").json()
    assert detail["config_schema"]["properties"]["symbol"]["x-lookout-type"] == "symbol"
    assert "strategy.py" in detail["files"]
    assert_error(client.get(f"/api/v1/strategies/{strategy_id}/versions/9/"), 404, "not_found")
    assert_error(client.get("/api/v1/strategies/424242/"), 404, "not_found")


def test_an_author_publishes_the_working_copy(as_role):
    strategy = StrategyFactory(files=bundle_files("crossover_a"))
    client = as_role("author")
    response = client.post(f"/api/v1/strategies/{strategy.pk}/publish", {"message": "first cut"})
    assert response.status_code == 201, response.json()
    assert response.json()["number"] == 1 and response.json()["published_by"] == client.user.username
    assert StrategyVersion.objects.get(strategy=strategy).message == "first cut"
    assert_error(client.post(f"/api/v1/strategies/{strategy.pk}/publish", {}), 409, "nothing_changed")


@pytest.mark.parametrize("role", ["viewer", "operator", "live_trader", None])
def test_publish_needs_the_author_role(as_role, role):
    strategy = StrategyFactory()
    body = assert_error(as_role(role).post(f"/api/v1/strategies/{strategy.pk}/publish", {}), 403, "permission_denied")
    assert "Strategy author" in body["message"]
    assert not StrategyVersion.objects.exists()
    assert AuditEvent.objects.filter(action="strategy.publish", allowed=False).exists()


def test_a_broken_bundle_is_a_400_listing_each_file_and_line(as_role):
    strategy = StrategyFactory(files={**bundle_files("buy_and_hold"), "strategy.py": "def broken(:\n"})
    body = assert_error(as_role("author").post(f"/api/v1/strategies/{strategy.pk}/publish", {}), 400, "invalid_bundle")
    assert any(key.startswith("strategy.py:1") for key in body["field_errors"]), body
    assert not StrategyVersion.objects.exists()
