"""API test fixtures: a client per role. Session clients log in as a console user would;
`token_client` sends `Authorization: Token <key>` as a script would."""

import json

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.api.factories import RoleUserFactory
from tests.securities.factories import SecurityFactory

ROLES = {"viewer": "Viewer", "operator": "Operator", "live_trader": "Live trader", "author": "Strategy author"}


@pytest.fixture(autouse=True)
def msft(db):
    return SecurityFactory(symbol="MSFT", name="Microsoft Corporation")


@pytest.fixture
def as_role(db):
    """`as_role("operator")`: an APIClient logged in (session) as a new user with that role;
    `as_role(None)` is a user with no role, `as_role("anonymous")` nobody at all."""

    def make(role: str | None) -> APIClient:
        client = APIClient()
        if role != "anonymous":
            client.user = RoleUserFactory(role=ROLES[role] if role else None)
            client.force_login(client.user)
        return client

    return make


@pytest.fixture
def token_client(db):
    """An Operator authenticated only by an API token."""
    user = RoleUserFactory(role="Operator")
    client = APIClient()
    client.user = user
    client.token = Token.objects.create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {client.token.key}")
    return client


def assert_error(response, status: int, code: str, *, field: str | None = None) -> dict:
    """The response is the API's one error shape with this status and code."""
    body = json.loads(response.content)
    assert response.status_code == status, body
    assert set(body) == {"status", "code", "message", "field_errors"}, body
    assert body["status"] == status and body["code"] == code, body
    assert body["message"], body
    if field is not None:
        assert field in body["field_errors"], body
    return body
