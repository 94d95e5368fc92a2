"""The operator console in a real browser: the New Run dialog's symbol checks, a Backtest run
created and started from the page and executed by a real Celery worker, and the tab a failed
run opens on. Depends on: /usr/bin/chromium (skipped without it), pytest-django's live_server,
the `celery_worker_process` fixture (tests/conftest.py) and the factories."""

from decimal import Decimal

import exchange_calendars as xcals
import pytest
from playwright.sync_api import expect

from issues.services import issue_record
from runs.models import Run, Status
from securities.models import Bar
from tests.runs.factories import RunFactory
from tests.securities.factories import FutureFactory, SecurityFactory
from tests.strategies.factories import StrategyFactory, StrategyVersionFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def msft():
    return SecurityFactory(symbol="MSFT", name="Microsoft Corporation")


@pytest.fixture
def buy_and_hold(msft):
    """The factory's buy-and-hold bundle: `symbol` (Equity, default MSFT), frequency pinned to day."""
    return StrategyVersionFactory(strategy=StrategyFactory(name="Buy and Hold"))


def session_bars(security, *, start: str, end: str, first_close: float) -> None:
    """Daily bars on every XNYS session from start to end, rising 0.25 a day."""
    calendar = xcals.get_calendar("XNYS", start=start, end=end)
    Bar.objects.bulk_create(
        Bar(
            security=security, frequency="day", time=calendar.session_open(session).to_pydatetime(),
            open=Decimal(str(first_close + 0.25 * n - 0.1)), high=Decimal(str(first_close + 0.25 * n + 0.5)),
            low=Decimal(str(first_close + 0.25 * n - 0.5)), close=Decimal(str(first_close + 0.25 * n)), volume=Decimal(1000000),
        )
        for n, session in enumerate(calendar.sessions_in_range(start, end))
    )


def open_new_run(page):
    page.get_by_role("link", name="New Run").click()
    expect(page.locator("#new-run-dialog")).to_be_visible()
    return page.locator("#new-run-dialog")


def test_an_unknown_ticker_offers_corrections_and_a_click_takes_one(login, buy_and_hold):
    page = login("Operator")
    dialog = open_new_run(page)
    symbol = dialog.locator("#new-strategy-symbol")
    symbol.fill("MSFX")
    expect(dialog.locator(".symbol-check.unknown")).to_contain_text("MSFX is not in the security master")
    dialog.locator('.chip[data-pick-symbol="MSFT"]').click()
    expect(symbol).to_have_value("MSFT")
    expect(dialog.locator(".symbol-check.ok")).to_contain_text("Microsoft Corporation")
    assert page.errors == []


def test_a_ticker_of_another_asset_type_is_explained_and_blocks_submit(login, buy_and_hold):
    FutureFactory(symbol="NQ", name="E-mini Nasdaq-100")
    page = login("Operator")
    dialog = open_new_run(page)
    dialog.locator("input[name=description]").fill("should not be created")
    dialog.locator("#new-strategy-symbol").fill("NQ")
    expect(dialog.locator(".symbol-check.mismatch")).to_contain_text("found as Future while this field expects Equity")
    summary = dialog.locator(".mismatch-summary")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("NQ")
    expect(summary.get_by_role("link", name="Edit parameter in the strategy editor")).to_have_attribute(
        "href", f"/strategies/{buy_and_hold.strategy_id}/edit#param-symbol"
    )
    create = dialog.get_by_role("button", name="Create Run")
    expect(create).to_be_disabled()
    dialog.locator("input[name=description]").press("Enter")  # the keyboard cannot submit it either
    page.wait_for_timeout(500)
    assert not Run.objects.exists()

    dialog.locator("#new-strategy-symbol").fill("MSFT")  # fixing the ticker lifts the block
    expect(summary).to_be_hidden()
    expect(create).to_be_enabled()


def test_a_backtest_created_and_started_in_the_page_completes_with_its_equity_chart(login, buy_and_hold, msft, celery_worker_process):
    session_bars(msft, start="2017-01-03", end="2017-06-30", first_close=62.0)
    page = login("Operator")
    dialog = open_new_run(page)
    dialog.locator("input[name=description]").fill("Browser backtest")
    dialog.locator("input[name='environment.start']").fill("2017-01-03")
    dialog.locator("input[name='environment.end']").fill("2017-06-30")
    expect(dialog.locator(".symbol-check.ok")).to_contain_text("Microsoft Corporation")
    dialog.get_by_role("button", name="Create Run").click()

    expect(page.locator("#new-run-dialog")).to_have_count(0)
    run = Run.objects.get(description="Browser backtest")
    expect(page).to_have_url(f"{page.context.pages[0].url.split('/runs/')[0]}/runs/{run.pk}/")
    expect(page.locator(f'#run-rows tr[data-run-id="{run.pk}"]')).to_be_visible()
    expect(page.locator("#tab-configuration")).to_have_attribute("aria-selected", "true")

    page.get_by_role("button", name="Start Run").click()
    header = page.locator("#run-header")
    try:
        expect(header.locator(".badge.status")).to_have_attribute("data-status", "complete", timeout=60_000)
    except AssertionError as exc:
        status = Run.objects.get(pk=run.pk).status
        raise AssertionError(f"run {run.pk} is {status} in the database; worker log:\n{celery_worker_process.log_path.read_text()}") from exc
    expect(page.locator("#tab-performance")).to_have_attribute("aria-selected", "true")
    chart = page.locator(f"#equity-chart-{run.pk}")
    expect(chart.locator("canvas")).to_have_count(1)
    assert int(chart.get_attribute("data-drawn")) > 100
    expect(page.locator(f'#run-rows tr[data-run-id="{run.pk}"] .badge.status')).to_have_attribute("data-status", "complete", timeout=10_000)
    expect(page.locator(".refresh-note")).to_have_text("Final figures.")
    assert Run.objects.get(pk=run.pk).status == Status.COMPLETE, celery_worker_process.log_path.read_text()
    assert page.errors == []


def test_a_run_in_error_opens_on_issues_and_logs_and_back_returns_to_the_list(login, msft):
    failed = RunFactory(description="Failed run", status=Status.ERROR)
    issue_record(run_id=failed.pk, code="strategy_exception", component="strategy", classification="user",
                 severity="error", message="ZeroDivisionError in on_bar", detail='File "strategy.py", line 9, in on_bar')
    page = login("Viewer")
    page.locator(f'#run-rows tr[data-run-id="{failed.pk}"] a.row-link').click()
    expect(page).to_have_url(f"{page.url.split('/runs/')[0]}/runs/{failed.pk}/")
    expect(page.locator("#tab-issues")).to_have_attribute("aria-selected", "true")
    expect(page.locator(".issues-table")).to_contain_text("ZeroDivisionError in on_bar")
    page.locator(".issue-detail summary").click()
    expect(page.locator(".issue-detail pre")).to_contain_text("line 9, in on_bar")
    expect(page.locator(f'#run-rows tr[data-run-id="{failed.pk}"]')).to_have_attribute("aria-selected", "true")

    page.go_back()
    expect(page).to_have_url(f"{page.url.split('/runs/')[0]}/runs/")
    expect(page.locator("#run-panel")).to_contain_text("Select a run")
    assert page.errors == []
