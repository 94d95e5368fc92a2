"""The New Run dialog and the security lookups behind its symbol fields: every parameter type
rendered, the server's validation shown inline, the mismatch summary, the Advanced section.
Depends on: the test database, role groups (migration runs/0002), the strategy/security
factories; a strategy bundle with one parameter of each type is defined below."""

import json
import re

import pytest
from django.contrib.auth.models import Group

from runs.models import Mode, Run, Status
from tests.securities.factories import FutureFactory, SecurityFactory
from tests.strategies.factories import StrategyFactory, StrategyVersionFactory

pytestmark = pytest.mark.django_db


HTMX = {"HTTP_HX_REQUEST": "true"}
EVERY_TYPE_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "title": "Label", "description": "Shown in the strategy log.", "default": "alpha"},
        "window": {"type": "integer", "title": "Window", "minimum": 2, "maximum": 200, "default": 20},
        "threshold": {"type": "number", "title": "Threshold", "minimum": 0, "default": 1.5},
        "use_stops": {"type": "boolean", "title": "Use stops", "default": True},
        "side": {"type": "string", "title": "Side", "enum": ["long", "short", "both"], "default": "long"},
        "symbol": {"type": "string", "title": "Stock", "x-lookout-type": "symbol", "x-lookout-asset-type": "EQUITY"},
        "hedge": {"type": "string", "title": "Hedge", "x-lookout-type": "symbol", "x-lookout-asset-type": "FUTURE", "default": "ES"},
        "frequency": {"type": "string", "title": "Bars", "x-lookout-type": "bar_frequency", "enum": ["minute", "day"], "default": "day"},
    },
    "required": ["symbol", "window"],
}


def every_type_files() -> dict[str, str]:
    return {
        "strategy.py": "from strategies.sdk import StrategyBase\n\n\nclass Strategy(StrategyBase):\n    pass\n",
        "config_schema.json": json.dumps(EVERY_TYPE_SCHEMA, indent=2),
    }


@pytest.fixture(autouse=True)
def securities():
    SecurityFactory(symbol="MSFT", name="Microsoft Corporation")
    SecurityFactory(symbol="MSFU", name="Made Up Software")
    FutureFactory(symbol="ES", name="E-mini S&P 500")
    FutureFactory(symbol="NQ", name="E-mini Nasdaq-100")


@pytest.fixture
def version():
    return StrategyVersionFactory(strategy=StrategyFactory(name="Every Type"), files=every_type_files())


@pytest.fixture
def operator_client(client, django_user_model):
    user = django_user_model.objects.create_user("operator", password="pw")
    user.groups.add(Group.objects.get(name="Operator"))
    client.force_login(user)
    return client


def field_html(html: str, name: str) -> str:
    """The markup of the form field whose input is named `name`."""
    start = html.index(f'name="{name}"')
    opening = html.rfind('<div class="field', 0, start)
    return html[opening: html.find('<div class="field', start)]


def test_the_dialog_renders_each_parameter_type_in_schema_order(operator_client, version):
    html = operator_client.get(f"/runs/new?version={version.pk}", HTTP_HX_TARGET="dialog-slot", **HTMX).content.decode()
    assert html.lstrip().startswith('<dialog id="new-run-dialog"')
    names = re.findall(r'name="strategy\.(\w+)"', html)
    assert list(dict.fromkeys(names)) == ["label", "window", "threshold", "use_stops", "side", "symbol", "hedge", "frequency"]

    assert 'type="text"' in field_html(html, "strategy.label") and 'value="alpha"' in field_html(html, "strategy.label")
    assert "Shown in the strategy log." in field_html(html, "strategy.label")
    window = field_html(html, "strategy.window")
    assert 'type="number"' in window and 'step="1"' in window and 'min="2"' in window and 'max="200"' in window
    assert 'class="req"' in window
    threshold = field_html(html, "strategy.threshold")
    assert 'step="any"' in threshold and 'value="1.5"' in threshold
    stops = field_html(html, "strategy.use_stops")
    assert 'type="checkbox"' in stops and "checked" in stops and 'type="hidden" name="strategy.use_stops" value="false"' in stops
    side = field_html(html, "strategy.side")
    assert "<select" in side and '<option value="long" selected>' in side and '<option value="both"' in side
    stock = field_html(html, "strategy.symbol")
    assert 'class="badge asset asset-equity"' in stock and ">Equity</span>" in stock
    assert 'hx-trigger="input changed delay:300ms, symbol-picked"' in stock and "Browse" in stock
    hedge = field_html(html, "strategy.hedge")
    assert ">Future</span>" in hedge and "E-mini S&amp;P 500" in hedge  # the default, recognised
    frequency = field_html(html, "strategy.frequency")
    assert "<select" in frequency and '<option value="day" selected>' in frequency


def test_a_pinned_bar_frequency_is_a_disabled_input(operator_client):
    pinned = StrategyVersionFactory()  # buy and hold: frequency const "day"
    html = operator_client.get(f"/runs/new?version={pinned.pk}", HTTP_HX_TARGET="dialog-slot", **HTMX).content.decode()
    frequency = field_html(html, "strategy.frequency")
    assert 'value="day" disabled' in frequency and "Fixed by the strategy." in frequency and "<select" not in frequency


def test_the_strategy_resolves_to_its_latest_version(operator_client):
    strategy = StrategyFactory(name="Versioned")
    StrategyVersionFactory(strategy=strategy)
    latest = StrategyVersionFactory(strategy=strategy)
    html = operator_client.get(f"/runs/new?strategy={strategy.pk}", HTTP_HX_TARGET="dialog-slot", **HTMX).content.decode()
    assert f'name="version" value="{latest.pk}"' in html
    assert ">v2</span>" in html


def test_the_deep_link_opens_the_dialog_on_the_runs_page(operator_client, version):
    html = operator_client.get(f"/runs/new?version={version.pk}").content.decode()
    assert "<html" in html and 'id="run-list"' in html
    assert '<dialog id="new-run-dialog" class="dialog dialog-wide" data-show-modal' in html
    assert f'name="version" value="{version.pk}"' in html


def test_changing_mode_rerenders_the_form_with_that_modes_environment(operator_client, version):
    query = f"version={version.pk}&strategy={version.strategy_id}&mode=paper&form=1&description=keep+me&strategy.window=33"
    html = operator_client.get(f"/runs/new?{query}", HTTP_HX_TARGET="run-form-new", **HTMX).content.decode()
    assert html.lstrip().startswith('<form id="run-form-new"')
    assert 'name="environment.feed"' in html and 'name="environment.speed"' in html
    assert 'name="environment.start"' not in html
    assert 'value="keep me"' in html and 'value="33"' in field_html(html, "strategy.window")


def test_changing_strategy_drops_the_other_strategys_values(operator_client, version):
    other = StrategyVersionFactory(strategy=StrategyFactory(name="Other"))
    query = f"version={version.pk}&strategy={other.strategy_id}&form=1&strategy.window=33&description=kept"
    html = operator_client.get(f"/runs/new?{query}", HTTP_HX_TARGET="run-form-new", **HTMX).content.decode()
    assert f'name="version" value="{other.pk}"' in html
    assert 'name="strategy.window"' not in html and 'value="kept"' in html


def test_live_is_offered_only_when_enabled_and_permitted(client, django_user_model, version, settings):
    trader = django_user_model.objects.create_user("trader", password="pw")
    trader.groups.add(Group.objects.get(name="Live trader"))
    client.force_login(trader)
    settings.LIVE_TRADING_ENABLED = False
    assert '<option value="live"' not in client.get("/runs/new", HTTP_HX_TARGET="dialog-slot", **HTMX).content.decode()
    settings.LIVE_TRADING_ENABLED = True
    assert '<option value="live"' in client.get("/runs/new", HTTP_HX_TARGET="dialog-slot", **HTMX).content.decode()


def test_a_viewer_cannot_open_or_post_the_dialog(client, django_user_model, version):
    viewer = django_user_model.objects.create_user("viewer", password="pw")
    viewer.groups.add(Group.objects.get(name="Viewer"))
    client.force_login(viewer)
    assert client.get("/runs/new", HTTP_HX_TARGET="dialog-slot", **HTMX).status_code == 403
    posted = client.post("/runs/new", {"version": version.pk, "description": "x", "mode": "backtest"}, **HTMX)
    assert posted.status_code == 403
    assert not Run.objects.exists()
    page = client.get("/runs/").content.decode()
    assert 'disabled aria-describedby="new-run-why">New Run</button>' in page


def test_the_advanced_section_shows_the_core_settings_with_their_defaults(operator_client, version):
    html = operator_client.get(f"/runs/new?version={version.pk}", HTTP_HX_TARGET="dialog-slot", **HTMX).content.decode()
    advanced = html[html.index('<details class="advanced"'): html.index("</details>", html.index('<details class="advanced"'))]
    assert "<details class=\"advanced\">" in advanced  # collapsed
    assert 'value="100000"' in field_html(advanced, "core.starting_cash")
    assert 'value="USD"' in field_html(advanced, "core.currency")
    assert 'name="core.commission.per_share"' in advanced and 'name="core.commission.bps"' in advanced
    assert '<option value="INFO" selected>' in field_html(advanced, "core.log_level")
    assert 'type="checkbox"' in field_html(advanced, "core.allow_short")


def test_create_posts_to_the_service_and_opens_the_new_run(operator_client, version):
    data = {
        "version": version.pk, "strategy": version.strategy_id, "mode": "backtest", "description": "first try",
        "environment.start": "2017-01-03", "environment.end": "2017-03-31",
        "strategy.label": "beta", "strategy.window": "30", "strategy.threshold": "2.5", "strategy.use_stops": ["false"],
        "strategy.side": "both", "strategy.symbol": "msft", "strategy.hedge": "NQ", "strategy.frequency": "minute",
        "core.starting_cash": "250000", "core.allow_short": ["false", "true"], "core.commission.bps": "1.5",
    }
    response = operator_client.post("/runs/new", data, HTTP_HX_TARGET="run-form-new", **HTMX)
    assert response.status_code == 200
    run = Run.objects.get()
    assert response["HX-Push-Url"] == f"/runs/{run.pk}/"
    assert response["HX-Retarget"] == "#run-panel"
    trigger = json.loads(response["HX-Trigger"])
    assert {"toast", "runs-changed", "dialog-close"} <= set(trigger)
    assert run.status == Status.NEW and run.mode == Mode.BACKTEST and run.description == "first try"
    assert run.config["strategy"] == {
        "label": "beta", "window": 30, "threshold": 2.5, "use_stops": False, "side": "both",
        "symbol": "MSFT", "hedge": "NQ", "frequency": "minute",
    }
    assert run.config["core"]["starting_cash"] == "250000"
    assert run.config["core"]["allow_short"] is True
    assert run.config["core"]["commission"] == {"bps": "1.5"}


def test_server_validation_errors_are_shown_next_to_their_fields(operator_client, version):
    data = {
        "version": version.pk, "mode": "backtest", "description": "",
        "environment.start": "2017-03-31", "environment.end": "2017-01-03",
        "strategy.window": "1", "strategy.threshold": "abc", "strategy.symbol": "MSFT",
        "core.starting_cash": "-5", "core.commission.bps": "1", "core.commission.per_share": "0.01",
    }
    response = operator_client.post("/runs/new", data, HTTP_HX_TARGET="run-form-new", **HTMX)
    assert response.status_code == 422
    html = response.content.decode()
    assert html.lstrip().startswith('<form id="run-form-new"')
    assert "required: say what this run is for" in html
    assert 'id="new-environment-end-error">must be after start' in html
    assert 'id="new-strategy-window-error">must be at least 2 (got 1)' in html
    assert 'id="new-strategy-threshold-error">' in html
    assert 'id="new-core-starting_cash-error">' in html
    assert "<details class=\"advanced\" open>" in html  # opened because a core setting is wrong
    assert "choose one model" in html
    assert 'value="abc"' in html  # what the operator typed comes back
    assert not Run.objects.exists()


def test_a_symbol_of_another_asset_type_blocks_submit_with_a_summary(operator_client, version):
    query = f"version={version.pk}&form=1&strategy.symbol=ES&strategy.hedge=MSFT"
    html = operator_client.get(f"/runs/new?{query}", HTTP_HX_TARGET="run-form-new", **HTMX).content.decode()
    summary = html[html.index('<div class="mismatch-summary"'): html.index("</div>", html.index('<div class="mismatch-summary"'))]
    assert "hidden" not in summary.split(">", 1)[0]
    assert "found as Future while this field expects Equity" in summary
    assert "found as Equity while this field expects Future" in summary
    assert f'href="/strategies/{version.strategy_id}/edit#param-symbol"' in summary
    assert f'href="/strategies/{version.strategy_id}/edit#param-hedge"' in summary
    assert 'data-blocked-by-mismatch disabled>Create Run</button>' in html

    posted = operator_client.post(
        "/runs/new",
        {"version": version.pk, "mode": "backtest", "description": "x", "strategy.symbol": "ES", "strategy.hedge": "ES"},
        HTTP_HX_TARGET="run-form-new",
        **HTMX,
    )
    assert posted.status_code == 422  # the server refuses it too
    assert "found as Future while this field expects Equity" in posted.content.decode()
    assert not Run.objects.exists()


def test_no_mismatch_means_no_summary(operator_client, version):
    html = operator_client.get(f"/runs/new?version={version.pk}&form=1&strategy.symbol=MSFT", HTTP_HX_TARGET="run-form-new", **HTMX).content.decode()
    assert '<div class="mismatch-summary" role="alert" hidden>' in html
    assert "data-blocked-by-mismatch >Create Run</button>" in html


# --- the security lookups ---------------------------------------------------------------------------


def test_validate_shows_the_name_of_a_recognised_ticker(operator_client):
    html = operator_client.get("/securities/validate?field=strategy.symbol&strategy.symbol=msft&asset_type=equity&input_id=new-strategy-symbol", **HTMX).content.decode()
    assert 'data-status="recognised"' in html and "Microsoft Corporation" in html


def test_validate_offers_clickable_corrections_for_an_unknown_ticker(operator_client):
    html = operator_client.get("/securities/validate?symbol=MSFX&asset_type=equity&input_id=new-strategy-symbol", **HTMX).content.decode()
    assert 'data-status="unknown"' in html
    assert 'data-pick-symbol="MSFT" data-input="new-strategy-symbol"' in html


def test_validate_explains_a_ticker_of_another_asset_type(operator_client):
    html = operator_client.get("/securities/validate?symbol=MSFT&asset_type=future", **HTMX).content.decode()
    assert 'data-status="other_asset_type"' in html
    assert "found as Equity while this field expects Future" in html


def test_validate_answers_json_without_htmx_and_refuses_bad_input(operator_client):
    data = operator_client.get("/securities/validate?symbol=ESX&asset_type=future").json()
    assert data["status"] == "unknown" and data["corrections"][0]["symbol"] == "ES"
    assert operator_client.get("/securities/validate?symbol=MSFT&asset_type=bond").status_code == 400
    assert operator_client.get("/securities/validate?symbol=MSFT").status_code == 400


def test_search_browses_by_symbol_or_name_within_the_asset_type(operator_client):
    html = operator_client.get("/securities/search?q=micro&asset_type=equity&input_id=new-strategy-symbol", **HTMX).content.decode()
    assert 'data-pick-symbol="MSFT"' in html and "Microsoft Corporation" in html
    assert operator_client.get("/securities/search?q=MS&asset_type=future").json() == {"results": []}
    found = operator_client.get("/securities/search?q=e-mini&asset_type=future").json()["results"]
    assert {row["symbol"] for row in found} == {"ES", "NQ"}


def test_the_lookups_need_a_login(client):
    assert client.get("/securities/validate?symbol=MSFT&asset_type=equity").status_code == 302
