"""Broker accounts: credentials by environment variable name only (never stored, never shown),
the Live config field, the New Run select, and Live gating. Depends on: the test database, the
role groups (migration runs/0002), the strategy factories."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError

from portfolio.broker_accounts import CredentialsMissing, broker_credentials
from portfolio.models import BrokerAccount
from runs.config import run_config_check
from runs.models import Mode, Run, Status
from runs.services import RunActionError, run_create, run_reset
from tests.runs.factories import RunFactory
from tests.strategies.factories import StrategyVersionFactory

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
SECRET = "sk-this-must-never-appear-anywhere-123"


def account(**fields) -> BrokerAccount:
    values = {"name": "alpaca-paper", "endpoint": "paper", "key_id_env": "LOOKOUT_TEST_KEY_ID", "secret_env": "LOOKOUT_TEST_SECRET"}
    values.update(fields)
    return BrokerAccount.objects.create(**values)


def test_the_account_keeps_variable_names_and_fills_in_alpacas_addresses():
    paper, live = account(), account(name="alpaca-live", endpoint="live")
    assert paper.urls == ("https://paper-api.alpaca.markets", "wss://paper-api.alpaca.markets/stream", "https://data.alpaca.markets", "wss://stream.data.alpaca.markets")
    assert live.urls[0] == "https://api.alpaca.markets" and live.urls[1] == "wss://api.alpaca.markets/stream"
    custom = account(name="local", trading_url="http://127.0.0.1:8000")
    assert custom.urls[0] == "http://127.0.0.1:8000"


def test_a_secret_pasted_where_a_variable_name_belongs_is_refused():
    pasted = BrokerAccount(name="oops", key_id_env="LOOKOUT_TEST_KEY_ID", secret_env="sk-live-abc/def")
    with pytest.raises(ValidationError, match="NAME of an environment variable"):
        pasted.full_clean()


def test_credentials_are_read_from_the_named_variables(monkeypatch):
    acct = account()
    monkeypatch.delenv("LOOKOUT_TEST_SECRET", raising=False)
    monkeypatch.setenv("LOOKOUT_TEST_KEY_ID", "PK123")
    with pytest.raises(CredentialsMissing, match="LOOKOUT_TEST_SECRET") as missing:
        broker_credentials(account=acct)
    assert "PK123" not in str(missing.value)
    monkeypatch.setenv("LOOKOUT_TEST_SECRET", SECRET)
    assert broker_credentials(account=acct) == ("PK123", SECRET)


def test_the_live_config_must_name_an_enabled_account():
    schema = {"type": "object", "properties": {}}
    check = run_config_check(config={"environment": {}}, mode=Mode.LIVE, schema=schema)
    assert check.missing == ["environment.broker_account"]
    check = run_config_check(config={"environment": {"broker_account": "nope"}}, mode=Mode.LIVE, schema=schema)
    assert "there is no broker account named 'nope'" in check.errors["environment.broker_account"]
    assert "an admin adds one" in check.errors["environment.broker_account"]
    account(name="off", enabled=False)
    account(name="on")
    check = run_config_check(config={"environment": {"broker_account": "off"}}, mode=Mode.LIVE, schema=schema)
    assert "is disabled: choose one of: on" in check.errors["environment.broker_account"]
    check = run_config_check(config={"environment": {"broker_account": "on"}}, mode=Mode.LIVE, schema=schema)
    assert check.startable and check.config["environment"] == {"broker_account": "on"}


def _user(django_user_model, name, group):
    user = django_user_model.objects.create_user(name, password="pw")
    user.groups.add(Group.objects.get(name=group))
    return user


def test_the_new_run_dialog_offers_enabled_accounts_only(client, django_user_model, settings):
    settings.LIVE_TRADING_ENABLED = True
    account(name="acct-enabled")
    account(name="acct-disabled", enabled=False)
    version = StrategyVersionFactory()
    client.force_login(_user(django_user_model, "trader", "Live trader"))
    html = client.get(f"/runs/new?version={version.pk}&mode=live&form=1", HTTP_HX_TARGET="run-form-new", **HTMX).content.decode()
    assert '<select id="run-new-environment-broker_account" name="environment.broker_account"' in html.replace("\n", " ") or 'name="environment.broker_account"' in html
    assert 'value="acct-enabled"' in html and "acct-disabled" not in html


def test_live_is_refused_when_disabled_and_without_the_live_role(client, django_user_model, settings):
    account(name="acct")
    version = StrategyVersionFactory()
    config = {"environment": {"broker_account": "acct"}, "strategy": {"symbol": "MSFT", "frequency": "day"}, "core": {}}
    trader = _user(django_user_model, "trader", "Live trader")
    operator = _user(django_user_model, "operator", "Operator")
    settings.LIVE_TRADING_ENABLED = False
    with pytest.raises(PermissionDenied, match="LIVE_TRADING_ENABLED"):
        run_create(user=trader, strategy_version=version, mode=Mode.LIVE, description="live", config=config)
    settings.LIVE_TRADING_ENABLED = True
    client.force_login(operator)
    posted = client.post("/runs/new", {"version": version.pk, "description": "live", "mode": "live", "environment.broker_account": "acct"}, **HTMX)
    assert posted.status_code == 403
    assert not Run.objects.filter(mode=Mode.LIVE).exists()


def test_reset_is_never_allowed_for_live(django_user_model):
    trader = _user(django_user_model, "trader", "Live trader")
    run = RunFactory(mode=Mode.LIVE, status=Status.STOPPED, config={"environment": {"broker_account": "acct"}})
    with pytest.raises(RunActionError, match="never reset"):
        run_reset(run=run, user=trader)


def test_the_admin_shows_variable_names_and_whether_they_are_set_never_values(admin_client, monkeypatch):
    acct = account()
    monkeypatch.setenv("LOOKOUT_TEST_KEY_ID", "PKVISIBLEKEY")
    monkeypatch.setenv("LOOKOUT_TEST_SECRET", SECRET)
    for path in ("/admin/portfolio/brokeraccount/", f"/admin/portfolio/brokeraccount/{acct.pk}/change/"):
        html = admin_client.get(path).content.decode()
        assert "LOOKOUT_TEST_SECRET" in html and "LOOKOUT_TEST_KEY_ID" in html
        assert SECRET not in html and "PKVISIBLEKEY" not in html
        assert 'alt="True"' in html
    monkeypatch.delenv("LOOKOUT_TEST_SECRET")
    html = admin_client.get("/admin/portfolio/brokeraccount/").content.decode()
    assert 'alt="False"' in html
