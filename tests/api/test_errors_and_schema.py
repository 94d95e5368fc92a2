"""The one error shape for every kind of error, the OpenAPI schema and the docs page."""

import re
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from rest_framework.test import APIClient

from config.api import api_exception_handler
from tests.api.conftest import assert_error
from tests.api.factories import RoleUserFactory
from tests.runs.factories import RunFactory

STATIC = Path(settings.BASE_DIR) / "static"


def test_an_unknown_api_path_is_a_json_404(as_role):
    body = assert_error(as_role("viewer").get("/api/v1/nothing-here"), 404, "not_found")
    assert "/api/v1/nothing-here" in body["message"]


def test_a_wrong_method_is_a_405(as_role):
    assert_error(as_role("operator").get(f"/api/v1/runs/{RunFactory().pk}/start"), 405, "method_not_allowed")


def test_a_body_that_is_not_json_is_a_400(as_role):
    response = as_role("operator").generic("POST", "/api/v1/runs/", "{not json", content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_an_unsupported_media_type_is_a_415(as_role):
    response = as_role("operator").post("/api/v1/runs/", "a=1", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")


def test_a_session_post_without_the_csrf_token_is_a_403(db):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(RoleUserFactory(role="Operator"))
    body = assert_error(client.post(f"/api/v1/runs/{RunFactory().pk}/start"), 403, "permission_denied")
    assert "CSRF" in body["message"]


def test_an_unexpected_exception_becomes_a_500_in_the_shape():
    response = api_exception_handler(RuntimeError("boom"), {"view": None})
    assert response.status_code == 500
    assert response.data == {"status": 500, "code": "internal_error", "message": "Something went wrong on the server; it has been logged.", "field_errors": {}}


def test_the_schema_is_openapi_3_and_covers_every_endpoint(db):
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    for expected in (
        "/api/v1/runs/", "/api/v1/runs/{run_id}/", "/api/v1/runs/{run_id}/start", "/api/v1/runs/{run_id}/kill",
        "/api/v1/runs/{run_id}/copy", "/api/v1/runs/{run_id}/reset", "/api/v1/runs/{run_id}/performance",
        "/api/v1/runs/{run_id}/equity", "/api/v1/runs/{run_id}/positions", "/api/v1/runs/{run_id}/orders",
        "/api/v1/runs/{run_id}/orders.csv", "/api/v1/runs/{run_id}/issues", "/api/v1/runs/{run_id}/logs",
        "/api/v1/strategies/", "/api/v1/strategies/{strategy_id}/", "/api/v1/strategies/{strategy_id}/versions/",
        "/api/v1/strategies/{strategy_id}/versions/{number}/", "/api/v1/strategies/{strategy_id}/publish",
        "/api/v1/securities/validate", "/api/v1/securities/search", "/api/v1/studies/", "/api/v1/studies/{study_id}/",
        "/api/v1/studies/{study_id}/trials", "/api/v1/studies/{study_id}/kill",
    ):
        assert expected in paths, expected
    start = schema["paths"]["/api/v1/runs/{run_id}/start"]["post"]
    assert {"200", "401", "403", "404", "409", "422"} <= set(start["responses"])
    assert any(parameter["name"] == "Idempotency-Key" for parameter in start["parameters"])
    assert start["responses"]["409"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])


def test_the_docs_page_uses_the_vendored_swagger_ui(db):
    html = APIClient().get("/api/docs/").content.decode()
    assert "/api/schema/" in html
    for asset in re.findall(r'(?:src|href)="/static/([^"]+)"', html):
        assert (STATIC / asset).is_file(), asset
    assert "vendor/swagger-ui/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    assert (STATIC / "vendor/swagger-ui/LICENSE").is_file()


def test_the_schema_generates_without_warnings_and_validates(tmp_path):
    # --fail-on-warn: an endpoint whose request or response drf-spectacular cannot type fails here.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/v1/runs/{run_id}/start" in (tmp_path / "schema.yaml").read_text()
