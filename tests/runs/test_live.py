"""Live runs end to end against a local server speaking Alpaca's REST and stream protocols
(tests/fakes/alpaca_server.py); our code is not patched, only pointed at the server by URL.

Depends on: the transactional test database; the MSFT security; the strategy bundle below
(one market order per bar, up to `orders`); `celery_worker_process` for the restart test."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from issues.models import Issue
from portfolio.models import BrokerAccount, Fill, LiveRunState, Order
from runs.execution import run_execute
from runs.models import Mode, Run, Status
from runs.services import run_kill, run_start
from runs.tasks import execute_run
from tests.conftest import ROOT, _test_database_url, wait_for
from tests.fakes.alpaca_server import KEY_ID, SECRET, FakeAlpaca
from tests.runs.factories import RunFactory
from tests.securities.factories import SecurityFactory
from tests.strategies.factories import StrategyVersionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

STRATEGY = '''
from strategies.sdk import AssetType, Intent, PlaceOrder, StrategyBase, Subscribe


class Strategy(StrategyBase):
    def on_start(self, now):
        self.sent = 0
        return [Subscribe(self.config["symbol"], AssetType.EQUITY, "minute")]

    def on_bar(self, event):
        orders = []
        while self.sent < self.config["orders"] and len(orders) < self.config["per_bar"]:
            self.sent += 1
            orders.append(PlaceOrder(event.symbol, Intent.BUY, quantity=self.config["quantity"]))
        return orders

    def on_order_update(self, update):
        print(f"update {update.order_id} {update.state} filled {update.filled_quantity}")
'''
SCHEMA = {
    "type": "object",
    "properties": {
        "symbol": {"type": "string", "x-lookout-type": "symbol", "x-lookout-asset-type": "EQUITY", "default": "MSFT"},
        "orders": {"type": "integer", "minimum": 0, "default": 1},
        "per_bar": {"type": "integer", "minimum": 1, "default": 1},
        "quantity": {"type": "integer", "minimum": 1, "default": 2},
    },
    "required": ["symbol"],
}
T0 = datetime(2026, 1, 5, 14, 31, tzinfo=UTC)


@pytest.fixture
def alpaca(monkeypatch, settings):
    settings.LIVE_TRADING_ENABLED = True
    settings.LIVE_RECONCILE_SECONDS = 1  # in-process runs: reconcile every second
    monkeypatch.setenv("LOOKOUT_TEST_ALPACA_KEY", KEY_ID)
    monkeypatch.setenv("LOOKOUT_TEST_ALPACA_SECRET", SECRET)
    with FakeAlpaca() as server:
        server.set_price("MSFT", "100")
        yield server
        # A test that failed half-way leaves its run going: end it before the database is flushed.
        for runner in InProcess.started:
            if runner.thread.is_alive():
                Run.objects.filter(pk=runner.run.pk, kill_requested_at__isnull=True).update(kill_requested_at=timezone.now())
                runner.thread.join(30)
        InProcess.started.clear()


def live_run(alpaca, **strategy) -> Run:
    SecurityFactory(symbol="MSFT", name="Microsoft Corporation", asset_type="equity")
    BrokerAccount.objects.get_or_create(name="fake-alpaca", defaults={
        "endpoint": "paper", "key_id_env": "LOOKOUT_TEST_ALPACA_KEY", "secret_env": "LOOKOUT_TEST_ALPACA_SECRET",
        "trading_url": alpaca.trading_url, "trading_stream_url": alpaca.trading_stream_url,
        "data_url": alpaca.data_url, "data_stream_url": alpaca.data_stream_url,
    })
    version = StrategyVersionFactory(files={"strategy.py": STRATEGY, "config_schema.json": json.dumps(SCHEMA)})
    config = {"environment": {"broker_account": "fake-alpaca"}, "strategy": {"symbol": "MSFT", "orders": 1, "per_bar": 1, "quantity": 2, **strategy}, "core": {}}
    run = RunFactory(strategy_version=version, mode=Mode.LIVE, config=config)
    return run_start(run=run, user=None, enqueue=False)


class InProcess:
    """run_execute in a thread of the test process, as the worker would call it."""

    started: list["InProcess"] = []

    def __init__(self, run: Run):
        self.run = run
        self.thread = threading.Thread(target=self._execute, daemon=True)
        self.thread.start()
        InProcess.started.append(self)

    def _execute(self) -> None:
        try:
            run_execute(run_id=self.run.pk)
        finally:
            connections.close_all()  # this thread's connections (a worker process would exit)

    def finish(self, timeout=30) -> Run:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the live run did not end"
        return Run.objects.get(pk=self.run.pk)


def ready(alpaca, run, timeout=20):
    wait_for(lambda: alpaca.data_subscribers("MSFT") >= 1 and alpaca.trade_listeners() >= 1, timeout=timeout,
             message=f"run {run.pk} to subscribe to MSFT bars and listen to trade updates")


def bar(alpaca, minute: int, price=100.0):
    return alpaca.emit_bar("MSFT", T0 + timedelta(minutes=minute), price, price + 1, price - 1, price, 1000)


def kill(run) -> float:
    run_kill(run=Run.objects.get(pk=run.pk), user=None)
    return time.monotonic()


def issues(run, code):
    return list(Issue.objects.filter(run_id=run.pk, code=code))


def test_full_and_partial_fills_are_booked_and_the_strategy_told(alpaca):
    alpaca.fill_mode = "partial"
    alpaca.partial_quantity = Decimal(1)
    run = live_run(alpaca, orders=2, per_bar=1, quantity=3)
    runner = InProcess(run)
    ready(alpaca, run)
    bar(alpaca, 0)
    wait_for(lambda: Order.objects.filter(run=run, state="partially_filled").exists(), timeout=10, message="a partial fill")
    alpaca.fill(f"r{run.pk}-1", price="101")
    alpaca.fill_mode = "fill"
    bar(alpaca, 1)
    wait_for(lambda: Order.objects.filter(run=run, state="filled").count() == 2, timeout=10, message="two filled orders")
    kill(run)
    finished = runner.finish()
    assert finished.status == Status.STOPPED
    first, second = Order.objects.filter(run=run).order_by("order_id")
    assert (first.client_order_id, first.filled_quantity, first.average_fill_price) == (f"r{run.pk}-1", 3, Decimal("100.66666667"))
    assert first.broker_order_id and second.filled_quantity == 3
    assert Fill.objects.filter(run=run).count() == 3  # 1 + 2 on the first order, 3 on the second
    assert sorted(Fill.objects.filter(run=run).values_list("execution_id", flat=True)) == sorted(
        e["data"]["execution_id"] for e in alpaca.events if e["data"]["event"] in ("fill", "partial_fill")
    )
    state = LiveRunState.objects.get(run=run)
    assert state.reconciled_at is not None and state.positions[0]["symbol"] == "MSFT" and state.positions[0]["quantity"] == "6"
    [left] = issues(run, "positions_left_open")
    assert "MSFT: 6" in left.detail
    assert alpaca.positions["MSFT"][0] == 6  # never closed


def test_a_rejection_is_recorded_with_the_brokers_message(alpaca):
    alpaca.reject_next("insufficient buying power")
    run = live_run(alpaca, orders=1)
    runner = InProcess(run)
    ready(alpaca, run)
    bar(alpaca, 0)
    wait_for(lambda: Order.objects.filter(run=run, state="rejected").exists(), timeout=10, message="the rejected order")
    kill(run)
    runner.finish()
    order = Order.objects.get(run=run)
    assert "insufficient buying power" in order.reject_reason
    [issue] = issues(run, "order_rejected")
    assert issue.component == "broker" and "insufficient buying power" in issue.detail


def test_a_dropped_order_answer_results_in_exactly_one_broker_order(alpaca):
    alpaca.drop_next_order_responses(1)
    run = live_run(alpaca, orders=1)
    runner = InProcess(run)
    ready(alpaca, run)
    bar(alpaca, 0)
    wait_for(lambda: Order.objects.filter(run=run, state="filled").exists(), timeout=15, message="the order to be found and filled")
    kill(run)
    runner.finish()
    cid = f"r{run.pk}-1"
    assert alpaca.posts_for(cid) == 1 and [p.dropped for p in alpaca.order_posts] == [True]
    assert len(alpaca.orders_by_client(cid)) == 1
    assert issues(run, "order_unknown")
    assert Fill.objects.filter(run=run).count() == 1 and Order.objects.get(run=run).filled_quantity == 2


def test_no_order_reaches_the_broker_after_the_kill_during_a_burst(alpaca):
    alpaca.fill_mode = "hold"
    run = live_run(alpaca, orders=100_000, per_bar=3, quantity=1)
    runner = InProcess(run)
    ready(alpaca, run)
    stop_bars = threading.Event()

    def burst():
        minute = 0
        while not stop_bars.is_set():
            bar(alpaca, minute)
            minute += 1
            time.sleep(0.03)

    emitter = threading.Thread(target=burst, daemon=True)
    emitter.start()
    wait_for(lambda: len(alpaca.order_posts) >= 20, timeout=20, message="a burst of orders")
    killed_at = kill(run)
    time.sleep(1.5)
    stop_bars.set()
    finished = runner.finish()
    assert finished.status == Status.STOPPED
    after = [post for post in alpaca.order_posts if post.at >= killed_at]
    assert after == [], f"{len(after)} order(s) reached the broker after the kill was recorded"
    sent = len(alpaca.order_posts)
    assert sent >= 20
    # Every working order was cancelled at the broker; nothing was closed.
    assert {o["status"] for o in alpaca.orders_by_client(f"r{run.pk}-")} == {"canceled"}
    assert "MSFT" not in alpaca.positions
    assert not Order.objects.filter(run=run, state__in=["pending", "working", "partially_filled"]).exists()


def test_outside_trades_on_the_account_are_detected(alpaca, settings):
    run = live_run(alpaca, orders=1)
    runner = InProcess(run)
    ready(alpaca, run)
    bar(alpaca, 0)
    wait_for(lambda: Order.objects.filter(run=run, state="filled").exists(), timeout=10, message="the run's own fill")
    alpaca.outside_trade("MSFT", "buy", "500", "100")
    wait_for(lambda: issues(run, "outside_trade"), timeout=10, message="the outside_trade issue")
    wait_for(lambda: issues(run, "broker_drift"), timeout=20, message="the broker_drift issue")
    kill(run)
    runner.finish()
    [outside] = issues(run, "outside_trade")
    assert outside.component == "broker" and "500" in outside.message
    assert Fill.objects.filter(run=run).count() == 1  # the outside trade is not booked as the run's


def test_secrets_never_reach_the_database_logs_or_pages(alpaca, client, django_user_model):
    from django.contrib.auth.models import Group

    run = live_run(alpaca, orders=1)
    runner = InProcess(run)
    ready(alpaca, run)
    bar(alpaca, 0)
    wait_for(lambda: Order.objects.filter(run=run, state="filled").exists(), timeout=10, message="the fill")
    kill(run)
    runner.finish()
    from io import StringIO

    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    assert SECRET not in dump.getvalue() and KEY_ID not in dump.getvalue()
    trader = django_user_model.objects.create_user("trader", password="pw")
    trader.groups.add(Group.objects.get_or_create(name="Live trader")[0])
    client.force_login(trader)
    for tab in ("performance", "issues", "configuration"):
        page = client.get(f"/runs/{run.pk}/?tab={tab}").content.decode()
        assert SECRET not in page and KEY_ID not in page
    assert "At the broker" in client.get(f"/runs/{run.pk}/?tab=performance").content.decode()


# -- restart ----------------------------------------------------------------------------------
@pytest.fixture
def quick_resume(monkeypatch, alpaca):
    """Workers started after this take a Live run over once its heartbeat is 2 s old."""
    monkeypatch.setenv("LIVE_RESUME_AFTER_SECONDS", "2")
    monkeypatch.setenv("LIVE_TRADING_ENABLED", "true")


def start_worker(log_path):
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--queues", "live", "--pool", "solo", "--loglevel", "INFO",
             "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    wait_for(lambda: "ready." in log_path.read_text(), timeout=30, message="the second worker to be ready")
    return process


def test_a_worker_killed_mid_run_is_replaced_and_the_run_resumes_without_duplicates(quick_resume, alpaca, celery_worker_process, tmp_path, settings):
    settings.LIVE_RESUME_AFTER_SECONDS = 2
    alpaca.fill_mode = "hold"
    run = live_run(alpaca, orders=4, per_bar=2, quantity=2)
    execute_run.apply_async(args=[run.pk], queue="live")
    ready(alpaca, run, timeout=30)
    bar(alpaca, 0)
    wait_for(lambda: len(alpaca.order_posts) == 2 and Order.objects.filter(run=run, state="working").count() == 2, timeout=15,
             message="two working orders")
    os.kill(celery_worker_process.pid, signal.SIGKILL)
    celery_worker_process.wait(10)
    # While nobody listens: one order fills completely, the other in part.
    alpaca.fill(f"r{run.pk}-1", price="100")
    alpaca.fill(f"r{run.pk}-2", quantity="1", price="102")
    replacement = start_worker(tmp_path / "worker2.log")
    try:
        # The new delivery of the run's task, sent again every few seconds as the stale-run sweep
        # would (extra deliveries find the run taken over and do nothing).
        deliveries = []

        def resumed():
            if not deliveries or time.monotonic() - deliveries[-1] > 5:
                execute_run.apply_async(args=[run.pk], queue="live")
                deliveries.append(time.monotonic())
            return LiveRunState.objects.filter(run=run, resumes=1).exists()

        wait_for(resumed, timeout=45, message=f"the run to be resumed; log:\n{(tmp_path / 'worker2.log').read_text()}")
        ready(alpaca, run, timeout=30)
        wait_for(lambda: Fill.objects.filter(run=run).count() == 2, timeout=15, message="the missed fills booked")
        resumed_at = time.monotonic()
        bar(alpaca, 1)
        wait_for(lambda: len(alpaca.order_posts) == 4, timeout=15, message="the resumed strategy's orders")
        kill(run)
        wait_for(lambda: Run.objects.filter(pk=run.pk, status=Status.STOPPED).exists(), timeout=30,
                 message=f"the run to stop; log:\n{(tmp_path / 'worker2.log').read_text()[-6000:]}")
    finally:
        replacement.send_signal(signal.SIGTERM)
        replacement.wait(20)
    cids = [post.client_order_id for post in alpaca.order_posts]
    assert cids == [f"r{run.pk}-{n}" for n in (1, 2, 3, 4)]  # numbering continued, nothing sent twice
    assert Fill.objects.filter(run=run).count() == 2
    first, second = Order.objects.filter(run=run, order_id__in=[1, 2]).order_by("order_id")
    assert (first.state, first.filled_quantity) == ("filled", 2)
    assert (second.state, second.filled_quantity) == ("cancelled", 1)  # the rest cancelled by the kill
    # Before its first new order, the new worker asked about the open orders and reconciled.
    first_new_post = min(post.at for post in alpaca.order_posts if post.client_order_id.endswith(("-3", "-4")))
    lookups = [at for at, method, path in alpaca.requests if path == "/v2/orders:by_client_order_id" and at < first_new_post]
    reconciles = [at for at, method, path in alpaca.requests if path == "/v2/positions" and resumed_at - 30 < at < first_new_post]
    assert len(lookups) >= 2 and reconciles
    assert issues(run, "worker_lost")
    assert not issues(run, "broker_drift")
    log = (tmp_path / "worker2.log").read_text()
    assert SECRET not in log


def test_refused_credentials_end_the_run_with_a_broker_issue_and_nothing_sent(alpaca, monkeypatch):
    monkeypatch.setenv("LOOKOUT_TEST_ALPACA_SECRET", "not-the-secret")
    run = live_run(alpaca, orders=1)
    finished = InProcess(run).finish()
    assert finished.status == Status.ERROR
    [issue] = issues(run, "broker_unavailable")
    assert "refused the credentials" in issue.message and "not-the-secret" not in issue.message + issue.detail
    assert alpaca.order_posts == []


def test_missing_credentials_name_the_variables_to_set(alpaca, monkeypatch):
    monkeypatch.delenv("LOOKOUT_TEST_ALPACA_SECRET")
    run = live_run(alpaca, orders=1)
    finished = InProcess(run).finish()
    assert finished.status == Status.ERROR
    [issue] = issues(run, "broker_unavailable")
    assert "LOOKOUT_TEST_ALPACA_SECRET" in issue.message and issue.classification == "user"
    assert alpaca.requests == []
