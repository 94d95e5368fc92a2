"""The strategy editor in a real browser: a new strategy gets a Future symbol parameter, is
published, and the toast's "Create run" opens New Run on that version; a syntax error is named
by file and line and the editor jumps there; the New Run mismatch link opens and highlights its
parameter row; leaving with unsaved changes asks first. Depends on: /usr/bin/chromium (skipped
without it), pytest-django's live_server and the factories."""

import json

import pytest
from playwright.sync_api import expect

from strategies.models import Strategy, StrategyVersion
from tests.browser.conftest import role_group
from tests.securities.factories import FutureFactory, SecurityFactory
from tests.strategies.factories import StrategyFactory, bundle_files

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def author_page(login, django_user_model):
    """Signed in as a Strategy author who is also an Operator (to follow "Create run")."""
    page = login("Strategy author")
    django_user_model.objects.get(username="strategy_author").groups.add(role_group("Operator"))
    return page


def test_a_new_strategy_with_a_future_parameter_is_published_and_opens_new_run(author_page):
    page = author_page
    FutureFactory(symbol="ES", name="E-mini S&P 500")
    SecurityFactory(symbol="MSFT", name="Microsoft Corporation")

    page.goto("/strategies/")
    page.get_by_role("button", name="New Strategy").click()
    page.fill("#new-strategy-name", "Futures Trend")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url("**/strategies/*/edit")
    strategy = Strategy.objects.get(name="Futures Trend")

    page.click("#params-entry")
    page.get_by_role("button", name="+ Add parameter").click()
    row = page.locator(".param-row").last
    row.get_by_label("Parameter name").fill("contract")
    row.locator("label:has-text('Type') select").select_option("symbol")
    row = page.locator("#param-contract")
    row.locator("label:has-text('Label') input").fill("Contract")
    row.locator("label:has-text('Asset type') select").select_option("FUTURE")
    row.locator("label:has-text('Default') input").fill("ES")
    # The live preview draws the field as New Run will, with its Future badge.
    preview = page.locator("#param-preview")
    expect(preview.locator("#preview-strategy-contract")).to_have_value("ES")
    expect(preview.locator(".field-symbol .asset-future").last).to_have_text("Future")
    expect(page.locator("#save-state")).to_have_text("Unsaved changes")
    # Operators see the parameters in this order: drag the new one to the top.
    page.locator("#param-contract .drag-handle").drag_to(page.locator("#param-symbol"))
    expect(page.locator(".param-row").first).to_have_id("param-contract")
    expect(preview.locator(".field").first).to_contain_text("Contract")

    page.fill("#publish-message", "trade a future")
    page.get_by_role("button", name="Publish").click()
    toast = page.locator(".toast", has_text="Published v1")
    expect(toast).to_be_visible()
    expect(page.locator("#save-state")).to_have_text("Saved")
    version = StrategyVersion.objects.get(strategy=strategy)
    assert version.number == 1 and version.message == "trade a future"
    contract = version.config_schema["properties"]["contract"]
    assert contract["x-lookout-type"] == "symbol" and contract["x-lookout-asset-type"] == "FUTURE" and contract["default"] == "ES"
    assert version.config_schema["x-lookout-order"] == ["contract", "symbol", "frequency"]
    expect(page.locator("#latest-version")).to_contain_text("v1 published just now")

    toast.get_by_role("link", name="Create run").click()
    page.wait_for_url(f"**/runs/new?version={version.pk}")
    dialog = page.locator("#new-run-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("input[name=version]")).to_have_value(str(version.pk))
    expect(dialog.locator("#new-strategy-contract")).to_have_value("ES")
    expect(dialog.locator("#param-contract .asset-future")).to_have_text("Future")
    assert page.errors == []


def test_a_syntax_error_is_named_by_file_and_line_and_the_editor_jumps_there(author_page):
    page = author_page
    files = bundle_files("buy_and_hold")
    strategy = StrategyFactory(files=files)
    broken_line = len(files["strategy.py"].splitlines()) + 1

    page.goto(f"/strategies/{strategy.pk}/edit")
    page.locator("#code-host .CodeMirror").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("def broken(:")
    page.get_by_role("button", name="Publish").click()

    problems = page.locator("#problems")
    expect(problems).to_be_visible()
    expect(problems.locator(".problem-where")).to_have_text(f"strategy.py:{broken_line}")
    expect(problems).to_contain_text("syntax error")
    expect(page.locator("#current-file")).to_have_text("strategy.py")
    assert page.evaluate("window.lookoutEditor.code.getCursor().line") + 1 == broken_line
    assert not StrategyVersion.objects.filter(strategy=strategy).exists()
    strategy.refresh_from_db()
    assert "def broken(:" in strategy.files["strategy.py"]  # the working copy was kept


def test_a_parameter_link_opens_the_panel_on_its_highlighted_row(author_page):
    page = author_page
    strategy = StrategyFactory(files=bundle_files("buy_and_hold"))
    page.goto(f"/strategies/{strategy.pk}/edit#param-symbol")
    row = page.locator("#param-symbol")
    expect(page.locator("#params-pane")).to_be_visible()
    expect(row).to_have_class("param-row highlight")
    expect(row).to_be_in_viewport()


def test_leaving_with_unsaved_changes_asks_first(author_page):
    page = author_page
    strategy = StrategyFactory(files=bundle_files("buy_and_hold"))
    page.goto(f"/strategies/{strategy.pk}/edit")
    page.locator("#code-host .CodeMirror").click()
    page.keyboard.type("# a thought\n")
    expect(page.locator("#save-state")).to_have_text("Unsaved changes")

    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("link", name="Runs", exact=True).click()
    assert asked and "unsaved changes" in asked[0]
    assert page.url.endswith(f"/strategies/{strategy.pk}/edit")

    page.get_by_role("button", name="Save").click()
    expect(page.locator("#save-state")).to_have_text("Saved")
    strategy.refresh_from_db()
    assert "# a thought" in strategy.files["strategy.py"]
    page.get_by_role("link", name="Runs", exact=True).click()
    page.wait_for_url("**/runs/")


def test_a_pasted_schema_is_checked_with_its_line_and_applied_to_the_rows(author_page):
    page = author_page
    strategy = StrategyFactory(files=bundle_files("buy_and_hold"))
    page.goto(f"/strategies/{strategy.pk}/edit")
    page.click("#params-entry")
    page.get_by_role("tab", name="JSON").click()
    bad = '{\n  "type": "object",\n  "properties": {\n    "n": {"type": "float"}\n  }\n}\n'
    page.evaluate("text => window.lookoutEditor.json.setValue(text)", bad)
    page.get_by_role("button", name="Check and apply").click()
    expect(page.locator("#problems .problem-where")).to_have_text("config_schema.json:4")
    assert page.evaluate("window.lookoutEditor.json.getCursor().line") + 1 == 4

    good = '{\n  "type": "object",\n  "properties": {\n    "n": {"type": "integer", "title": "Count", "minimum": 1, "default": 3}\n  }\n}\n'
    page.evaluate("text => window.lookoutEditor.json.setValue(text)", good)
    page.get_by_role("button", name="Check and apply").click()
    expect(page.locator("#problems")).to_be_hidden()
    expect(page.locator("#params-visual")).to_be_visible()
    expect(page.locator(".param-row")).to_have_count(1)
    expect(page.locator("#param-n label:has-text('Min') input")).to_have_value("1")
    expect(page.locator("#preview-strategy-n")).to_have_value("3")


def test_a_choice_parameter_takes_its_default_from_its_choices(author_page):
    page = author_page
    strategy = StrategyFactory(files=bundle_files("buy_and_hold"))
    page.goto(f"/strategies/{strategy.pk}/edit")
    page.click("#params-entry")
    page.get_by_role("button", name="+ Add parameter").click()
    page.locator("#param-parameter label:has-text('Type') select").select_option("choice")
    choices = page.locator("#param-parameter label:has-text('Choices') input")
    choices.fill("fast, slow")
    choices.press("Tab")
    page.locator("#param-parameter label:has-text('Default') select").select_option("slow")
    expect(page.locator("#preview-strategy-parameter")).to_have_value("slow")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#save-state")).to_have_text("Saved")
    strategy.refresh_from_db()
    schema = json.loads(strategy.files["config_schema.json"])
    assert schema["properties"]["parameter"] == {"type": "string", "enum": ["fast", "slow"], "default": "slow"}
    assert list(schema["properties"]) == ["symbol", "frequency", "parameter"]
