"""More of the operator console in a real browser: symbol checks against a schema with one
Equity and one Future field (a ticker that exists under both types), a backtest watched from
start to complete with the Performance tab refreshing on its own while it runs, a long backtest
killed through the Kill Run dialog, and the orders CSV downloaded from the page. Depends on:
/usr/bin/chromium (skipped without it), pytest-django's live_server, the `celery_worker_process`
fixture (tests/conftest.py) and the factories."""

import csv
import io
import json
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from portfolio.models import Order
from runs.models import Run, Status
from securities.models import Bar
from tests.browser.test_run_console import open_new_run, session_bars
from tests.portfolio.factories import OrderFactory, stored_equity
from tests.runs.factories import RunFactory
from tests.securities.factories import FutureFactory, SecurityFactory
from tests.strategies.factories import StrategyFactory, StrategyVersionFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# product.md §10, in order.
ORDERS_CSV_COLUMNS = [
    "order_id", "client_order_id", "run_id", "created_at", "updated_at", "symbol", "asset_type", "intent", "side",
    "order_type", "time_in_force", "quantity", "limit_price", "stop_price", "state", "filled_quantity",
    "average_fill_price", "commission", "reject_reason", "broker_order_id", "tag",
]

PAIR_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "stock": {"type": "string", "title": "Stock", "x-lookout-type": "symbol", "x-lookout-asset-type": "EQUITY", "default": "MSFT"},
        "hedge": {"type": "string", "title": "Hedge future", "x-lookout-type": "symbol", "x-lookout-asset-type": "FUTURE", "default": "ES"},
    },
    "required": ["stock", "hedge"],
}
PAIR_STRATEGY = '''"""Holds the stock; the hedge future is only subscribed to."""

from strategies.sdk import AssetType, StrategyBase, Subscribe


class Strategy(StrategyBase):
    def on_start(self, now):
        return [Subscribe(self.config["stock"], AssetType.EQUITY, "day"), Subscribe(self.config["hedge"], AssetType.FUTURE, "day")]

    def on_bar(self, event):
        return None
'''

# Buy and hold that takes a while over each bar, so a run over eight years of daily bars lasts long enough
# to be watched (and killed) while it is running.
SLOW_STRATEGY = '''"""Buy and hold, slowly: each bar takes {seconds} s of wall time."""

import time

from strategies.sdk import AssetType, Intent, PlaceOrder, StrategyBase, Subscribe


class Strategy(StrategyBase):
    def on_start(self, now):
        self.invested = False
        return [Subscribe(self.config["symbol"], AssetType.EQUITY, self.config["frequency"])]

    def on_bar(self, event):
        time.sleep({seconds})
        if self.invested:
            return None
        self.invested = True
        return [PlaceOrder(event.symbol, Intent.BUY, notional=self.ctx.cash)]
'''
SLOW_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "symbol": {"type": "string", "title": "Symbol", "x-lookout-type": "symbol", "x-lookout-asset-type": "EQUITY", "default": "MSFT"},
        "frequency": {"type": "string", "title": "Bar frequency", "x-lookout-type": "bar_frequency", "const": "day"},
    },
    "required": ["symbol"],
}


def slow_run(*, start: str, end: str, seconds_per_bar: float) -> Run:
    files = {"strategy.py": SLOW_STRATEGY.replace("{seconds}", str(seconds_per_bar)), "config_schema.json": json.dumps(SLOW_SCHEMA)}
    version = StrategyVersionFactory(strategy=StrategyFactory(name="Slow Buy and Hold", files=files), files=files)
    return RunFactory(
        strategy_version=version,
        description="Slow backtest",
        config={"environment": {"start": start, "end": end}, "strategy": {"symbol": "MSFT", "frequency": "day"}, "core": {}},
    )


def worker_log(worker) -> str:
    return worker.log_path.read_text()


@pytest.fixture
def msft():
    return SecurityFactory(symbol="MSFT", name="Microsoft Corporation")


@pytest.fixture
def pair_version():
    files = {"strategy.py": PAIR_STRATEGY, "config_schema.json": json.dumps(PAIR_SCHEMA)}
    return StrategyVersionFactory(strategy=StrategyFactory(name="Stock and Hedge", files=files), files=files)


def test_a_future_in_an_equity_field_blocks_submit_and_a_ticker_of_both_types_fits_both_fields(login, msft, pair_version):
    FutureFactory(symbol="NQ", name="E-mini Nasdaq-100")
    SecurityFactory(symbol="ES", name="Eversource Energy")
    FutureFactory(symbol="ES", name="E-mini S&P 500")
    page = login("Operator")
    dialog = open_new_run(page)
    stock, hedge = dialog.locator("#new-strategy-stock"), dialog.locator("#new-strategy-hedge")
    create = dialog.get_by_role("button", name="Create Run")

    stock.fill("NQ")
    expect(dialog.locator("#new-strategy-stock-status .symbol-check.mismatch")).to_contain_text("found as Future while this field expects Equity")
    summary = dialog.locator(".mismatch-summary")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("NQ")
    expect(create).to_be_disabled()

    stock.fill("ES")
    expect(dialog.locator("#new-strategy-stock-status .symbol-check.ok")).to_contain_text("Eversource Energy")
    hedge.fill("ES")
    expect(dialog.locator("#new-strategy-hedge-status .symbol-check.ok")).to_contain_text("E-mini S&P 500")
    expect(summary).to_be_hidden()
    expect(create).to_be_enabled()

    dialog.locator("input[name=description]").fill("Stock and hedge")
    create.click()
    expect(page.locator("#new-run-dialog")).to_have_count(0)
    run = Run.objects.get(description="Stock and hedge")
    assert run.config["strategy"]["stock"] == "ES" and run.config["strategy"]["hedge"] == "ES"
    assert page.errors == []


def test_a_running_backtest_refreshes_its_performance_tab_until_it_completes(login, msft, celery_worker_process):
    session_bars(msft, start="2010-01-04", end="2017-12-29", first_close=30.0)
    sessions = Bar.objects.filter(security=msft).count()
    run = slow_run(start="2010-01-04", end="2017-12-29", seconds_per_bar=0.01)  # 2,012 bars: about 20 s
    page = login("Operator")
    refreshes = []
    page.on("request", lambda request: refreshes.append(request.url) if request.headers.get("hx-target") == "performance" else None)
    page.goto(f"/runs/{run.pk}/")
    page.get_by_role("button", name="Start Run").click()

    status = page.locator("#run-header .badge.status")
    expect(status).to_have_attribute("data-status", "running", timeout=20_000)
    expect(page.locator("#tab-performance")).to_have_attribute("aria-selected", "true")
    note = page.locator(".refresh-note")
    expect(note).to_contain_text("Refreshing every 10 s")
    value = page.locator(".kpi").filter(has_text="Portfolio value").locator(".kpi-value")
    points = page.locator(".chart-head .muted")
    before = (note.inner_text(), value.inner_text(), points.inner_text())

    # The next ten-second refresh, while the run is still running, shows newer figures.
    expect(note).not_to_have_text(before[0], timeout=12_000)
    assert Run.objects.get(pk=run.pk).status == Status.RUNNING, worker_log(celery_worker_process)
    assert refreshes, "the Performance tab sent no refresh request"
    assert (value.inner_text(), points.inner_text()) != before[1:]

    try:
        expect(status).to_have_attribute("data-status", "complete", timeout=40_000)
    except AssertionError as exc:
        raise AssertionError(f"run {run.pk} is {Run.objects.get(pk=run.pk).status}; worker log:\n{worker_log(celery_worker_process)}") from exc
    expect(note).to_have_text("Final figures.")
    stored = len(stored_equity(run)[0])
    assert stored >= sessions  # a point at every bar's close, whatever the engine adds at the start
    expect(points).to_contain_text(f"{stored} points")
    assert page.errors == []


def test_killing_a_long_backtest_from_its_dialog_stops_it_and_keeps_its_results(login, msft, celery_worker_process):
    session_bars(msft, start="2010-01-04", end="2017-12-29", first_close=30.0)
    sessions = Bar.objects.filter(security=msft).count()
    run = slow_run(start="2010-01-04", end="2017-12-29", seconds_per_bar=0.02)  # 2,012 bars: about 40 s unless killed
    page = login("Operator")
    page.goto(f"/runs/{run.pk}/")
    page.get_by_role("button", name="Start Run").click()
    status = page.locator("#run-header .badge.status")
    expect(status).to_have_attribute("data-status", "running", timeout=20_000)
    expect(page.locator(".chart-head .muted")).to_contain_text("point", timeout=15_000)  # some results are stored

    page.locator("#run-header").get_by_role("button", name="Kill Run").click()
    dialog = page.locator(f"#confirm-kill-{run.pk}")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Results recorded so far are kept")
    page.wait_for_timeout(2_500)  # the header's status poll (every 2 s) leaves an open dialog alone
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Kill Run").click()

    try:
        expect(status).to_have_attribute("data-status", "stopped", timeout=20_000)
    except AssertionError as exc:
        raise AssertionError(f"run {run.pk} is {Run.objects.get(pk=run.pk).status}; worker log:\n{worker_log(celery_worker_process)}") from exc
    run.refresh_from_db()
    assert run.status == Status.STOPPED
    kept = len(stored_equity(run)[0])
    assert 0 < kept < sessions
    assert Order.objects.filter(run=run, state="filled").count() == 1
    expect(page.locator(".chart-head .muted")).to_contain_text(f"{kept} point")
    assert page.errors == []


def test_download_orders_saves_the_runs_orders_as_the_ems_csv(login, msft):
    run = RunFactory(description="Run with orders", status=Status.COMPLETE)
    filled = OrderFactory(run=run, order_id=1, tag="entry")
    limit = OrderFactory(
        run=run, order_id=2, intent="sell", side="sell", order_type="limit", limit_price=Decimal("70.25"), quantity=Decimal("4"),
        state="working", filled_quantity=Decimal("0"), average_fill_price=None, tag="=HYPERLINK(\"x\")",
    )
    page = login("Viewer")
    page.goto(f"/runs/{run.pk}/")
    with page.expect_download() as download_info:
        page.locator("#run-header").get_by_role("link", name="Download Orders").click()
    download = download_info.value
    assert download.suggested_filename == f"run-{run.pk}-orders.csv"
    with open(download.path(), newline="", encoding="utf-8") as saved:
        rows = list(csv.reader(io.StringIO(saved.read())))

    assert rows[0] == ORDERS_CSV_COLUMNS
    assert len(rows) == 3
    records = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert [record["order_id"] for record in records] == ["1", "2"]
    expected_first = {
        "client_order_id": filled.client_order_id, "run_id": str(run.pk), "symbol": "MSFT", "asset_type": "equity", "intent": "buy",
        "side": "buy", "order_type": "market", "time_in_force": "day", "quantity": "10", "limit_price": "", "stop_price": "",
        "state": "filled", "filled_quantity": "10", "average_fill_price": "62.5", "tag": "entry",
    }
    assert {column: records[0][column] for column in expected_first} == expected_first
    assert records[0]["created_at"] == "2017-01-03T14:30:00Z"
    assert records[1]["client_order_id"] == limit.client_order_id
    assert (records[1]["intent"], records[1]["order_type"], records[1]["limit_price"], records[1]["quantity"]) == ("sell", "limit", "70.25", "4")
    assert (records[1]["state"], records[1]["filled_quantity"], records[1]["average_fill_price"]) == ("working", "0", "")
    assert records[1]["tag"] == "'=HYPERLINK(\"x\")"  # neutralised for spreadsheets
    assert page.errors == []
