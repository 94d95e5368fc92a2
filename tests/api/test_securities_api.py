"""/api/v1/securities/validate and /search: the run form's lookups for scripts."""

import pytest

from tests.api.conftest import assert_error
from tests.securities.factories import FutureFactory, SecurityFactory


@pytest.mark.parametrize("role", ["viewer", "operator", "live_trader", "author", None])
def test_validate_recognises_a_symbol(as_role, role):
    body = as_role(role).get("/api/v1/securities/validate?symbol=msft&asset_type=equity").json()
    assert (body["status"], body["symbol"], body["name"]) == ("recognised", "MSFT", "Microsoft Corporation")


def test_validate_names_the_other_asset_type_and_suggests_corrections(as_role):
    FutureFactory(symbol="ES", name="E-mini S&P 500")
    client = as_role("viewer")
    other = client.get("/api/v1/securities/validate?symbol=ES&asset_type=equity").json()
    assert other["status"] == "other_asset_type" and other["found_as"] == ["future"]
    unknown = client.get("/api/v1/securities/validate?symbol=MSFTT&asset_type=equity").json()
    assert unknown["status"] == "unknown" and unknown["corrections"][0]["symbol"] == "MSFT"


def test_validate_without_an_asset_type_is_a_400(as_role):
    body = assert_error(as_role("viewer").get("/api/v1/securities/validate?symbol=MSFT&asset_type=bond"), 400, "invalid", field="asset_type")
    assert "bond" in body["field_errors"]["asset_type"]
    assert_error(as_role("viewer").get("/api/v1/securities/validate?symbol=MSFT"), 400, "invalid", field="asset_type")


def test_search_by_symbol_prefix_and_name(as_role, token_client):
    SecurityFactory(symbol="MSTR", name="MicroStrategy")
    client = as_role("viewer")
    assert [s["symbol"] for s in client.get("/api/v1/securities/search?q=MS").json()] == ["MSFT", "MSTR"]
    assert [s["symbol"] for s in token_client.get("/api/v1/securities/search?q=microstrategy&asset_type=equity").json()] == ["MSTR"]
    assert_error(client.get("/api/v1/securities/search"), 400, "invalid", field="q")


def test_lookups_need_a_login(as_role):
    assert_error(as_role("anonymous").get("/api/v1/securities/search?q=MS"), 401, "not_authenticated")
