"""The console's API token page (/api/tokens/, linked from the user menu) and the admin's."""

import re

from django.contrib import admin
from django.test import Client
from rest_framework.authtoken.models import Token, TokenProxy
from rest_framework.test import APIClient

from issues.models import AuditEvent
from tests.api.conftest import assert_error
from tests.api.factories import RoleUserFactory


def _logged_in(role: str | None = "Viewer") -> Client:
    client = Client()
    client.user = RoleUserFactory(role=role)
    client.force_login(client.user)
    return client


def test_the_user_menu_links_the_token_page(db):
    assert 'href="/api/tokens/"' in _logged_in().get("/runs/").content.decode()


def test_create_shows_the_key_once_and_it_authenticates_scripts(db):
    client = _logged_in("Operator")
    assert "You have no API token" in client.get("/api/tokens/").content.decode()
    html = client.post("/api/tokens/", {"action": "create"}).content.decode()
    key = re.search(r'id="new-token-key">([0-9a-f]{40})<', html).group(1)
    assert Token.objects.get(user=client.user).key == key
    assert key not in client.get("/api/tokens/").content.decode()
    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert script.get("/api/v1/runs/").status_code == 200
    assert AuditEvent.objects.filter(action="api_token.create", actor=client.user).exists()


def test_creating_again_replaces_the_old_token(db):
    client = _logged_in()
    client.post("/api/tokens/", {"action": "create"})
    old = Token.objects.get(user=client.user).key
    client.post("/api/tokens/", {"action": "create"})
    assert Token.objects.get(user=client.user).key != old


def test_revoke_refuses_the_token_from_then_on(db):
    client = _logged_in()
    client.post("/api/tokens/", {"action": "create"})
    key = Token.objects.get(user=client.user).key
    assert "Token revoked" in client.post("/api/tokens/", {"action": "revoke"}).content.decode()
    assert not Token.objects.filter(user=client.user).exists()
    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert_error(script.get("/api/v1/runs/"), 401, "authentication_failed")
    assert "no token to revoke" in client.post("/api/tokens/", {"action": "revoke"}).content.decode()


def test_an_unknown_action_is_a_400(db):
    assert _logged_in().post("/api/tokens/", {"action": "steal"}).status_code == 400


def test_the_token_page_needs_a_login(db):
    response = Client().get("/api/tokens/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_token_page_needs_the_csrf_token(db):
    client = Client(enforce_csrf_checks=True)
    client.force_login(RoleUserFactory())
    assert client.post("/api/tokens/", {"action": "create"}).status_code == 403
    assert not Token.objects.exists()


def test_tokens_are_managed_in_the_admin_too():
    assert admin.site.is_registered(TokenProxy)
