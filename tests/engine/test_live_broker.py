"""The Live broker over the real Alpaca adapter, against the local fake Alpaca server."""

import contextlib
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from runs.adapters.alpaca import AlpacaTradingClient, Credentials, TradeUpdatesStream
from runs.engine.core_settings import CoreSettings
from runs.engine.diagnostics import IssueCollector
from runs.engine.feed import Instrument
from runs.engine.ledger import Portfolio
from runs.engine.live_broker import LiveBroker, LiveOrder
from strategies.sdk.base import SecurityInfo
from strategies.sdk.enums import AssetType, Intent, OrderState, OrderType, TimeInForce
from tests.fakes.alpaca_server import KEY_ID, SECRET, FakeAlpaca

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


class Updates:
    """The listener side: what the strategy would be told."""

    def __init__(self):
        self.events = []

    def order_changed(self, order, time, last_quantity, last_price):
        self.events.append((order.order_id, order.state, last_quantity, last_price))

    def order_rejected(self, order, category):
        raise AssertionError("the Live broker reports its rejections itself")


@pytest.fixture
def alpaca():
    with FakeAlpaca() as server:
        server.set_price("MSFT", "100")
        yield server


def _instrument(symbol="MSFT"):
    return Instrument(SecurityInfo(symbol, AssetType.EQUITY, symbol, "NASDAQ", "USD", Decimal("0.01"), Decimal(1)))


class Harness:
    def __init__(self, alpaca, *, guard=None, give_up=30.0, baseline=None):
        credentials = Credentials(KEY_ID, SECRET)
        self.client = AlpacaTradingClient(alpaca.trading_url, credentials, timeout=2)
        self.stream = TradeUpdatesStream(alpaca.trading_stream_url, credentials, timeout=2)
        self.stream.start()
        assert self.stream.wait_connected(5)
        alpaca.wait_for_listeners()
        self.portfolio = Portfolio()
        self.portfolio.deposit(Decimal("100000"), time=NOW, description="starting cash")
        self.listener = Updates()
        self.issues = IssueCollector()
        self.stored = []
        self.instrument = _instrument()
        self.broker = LiveBroker(
            core=CoreSettings.from_config({}), portfolio=self.portfolio, client_order_prefix="r7", listener=self.listener,
            gateway=self.client, updates=self.stream.updates, issues=self.issues, store_order=self.stored.append,
            send_guard=guard or (lambda: contextlib.nullcontext(True)), instrument_for=lambda symbol: self.instrument,
            reconcile_seconds=3600, unknown_give_up_seconds=give_up, baseline=baseline,
        )

    def place(self, quantity="3", intent=Intent.BUY, order_type=OrderType.MARKET, limit=None):
        return self.broker.place(self.instrument, "MSFT", AssetType.EQUITY, intent, Decimal(quantity), None, order_type,
                                 Decimal(limit) if limit else None, None, TimeInForce.DAY, None, 0, NOW)

    def settle(self, until, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            self.broker.poll(datetime.now(UTC))
            time.sleep(0.02)
        assert until(), "the broker did not settle"

    def close(self):
        self.stream.stop()
        self.client.close()


@pytest.fixture
def harness(alpaca):
    made = []

    def make(**kwargs):
        made.append(Harness(alpaca, **kwargs))
        return made[-1]

    yield make
    for h in made:
        h.close()


def test_full_fill_is_booked_once_and_reported(alpaca, harness):
    h = harness()
    order = h.place("3")
    assert h.stored[0].client_order_id == "r7-1" and h.stored[0].state is OrderState.PENDING  # stored before sending
    h.settle(lambda: order.state is OrderState.FILLED)
    assert h.instrument.position.quantity == 3 and h.portfolio.cash == Decimal("99700")
    assert [f.execution_id for f in h.broker.new_fills] == [e["data"]["execution_id"] for e in alpaca.events if e["data"]["event"] == "fill"]
    # A repeated execution (a stream replay) is not booked twice.
    h.broker.apply_update(_replay(alpaca), NOW)
    assert h.instrument.position.quantity == 3 and len(h.broker.fills) == 1
    assert (1, OrderState.FILLED, Decimal(3), Decimal(100)) in h.listener.events
    assert order.broker_order_id == alpaca.orders_by_client("r7-")[0]["id"]


def _replay(alpaca):
    from runs.adapters.alpaca import TradeUpdate

    fill = next(e for e in alpaca.events if e["data"]["event"] == "fill")
    return TradeUpdate.from_json(fill["data"])


def test_partial_fills_then_the_rest(alpaca, harness):
    alpaca.fill_mode = "partial"
    alpaca.partial_quantity = Decimal(2)
    h = harness()
    order = h.place("5")
    h.settle(lambda: order.state is OrderState.PARTIALLY_FILLED)
    assert order.filled_quantity == 2 and h.instrument.position.quantity == 2
    alpaca.fill("r7-1", price="102")
    h.settle(lambda: order.state is OrderState.FILLED)
    assert order.filled_quantity == 5 and order.average_fill_price == Decimal("101.2")
    assert h.portfolio.cash == Decimal("100000") - 200 - 306
    assert [e[1] for e in h.listener.events] == [OrderState.WORKING, OrderState.PARTIALLY_FILLED, OrderState.FILLED]


def test_rejection_by_the_broker(alpaca, harness):
    alpaca.reject_next("insufficient buying power")
    h = harness()
    order = h.place("3")
    assert order.state is OrderState.REJECTED and "insufficient buying power" in order.reason
    [issue] = h.issues.drain()
    assert issue.code == "order_rejected" and issue.component == "broker" and "insufficient buying power" in issue.detail
    alpaca.reject_next("asset is not tradable", via="stream")
    second = h.place("1")
    h.settle(lambda: second.state is OrderState.REJECTED)
    assert h.instrument.position is None


def test_dropped_answer_leaves_the_order_unknown_then_found_exactly_once(alpaca, harness):
    alpaca.fill_mode = "hold"
    alpaca.drop_next_order_responses(1)
    h = harness()
    order = h.place("3")
    assert order.state is OrderState.PENDING and order.reason.startswith("unknown")
    h.settle(lambda: order.broker_order_id != "")
    assert order.state is OrderState.WORKING
    alpaca.fill("r7-1")
    h.settle(lambda: order.state is OrderState.FILLED)
    assert alpaca.posts_for("r7-1") == 1 and len(alpaca.orders_by_client("r7-")) == 1
    assert h.instrument.position.quantity == 3


def test_a_lost_answer_with_a_silent_stream_is_resolved_by_looking_up_the_client_order_id(alpaca, harness):
    alpaca.stream_muted = True
    alpaca.drop_next_order_responses(1)
    h = harness()
    order = h.place("3")
    assert order.state is OrderState.PENDING and order.reason.startswith("unknown")
    h.settle(lambda: order.state is OrderState.FILLED)  # found by the lookup, filled by the broker meanwhile
    assert any(path == "/v2/orders:by_client_order_id" for _, method, path in alpaca.requests)
    assert alpaca.posts_for("r7-1") == 1 and h.instrument.position.quantity == 3
    assert [f.execution_id for f in h.broker.fills] == ["r7-1-catch-up-3"]


def test_an_order_the_broker_never_received_is_rejected_not_resent(alpaca, harness):
    h = harness(give_up=0.5)
    # The stream is quiet and the lookup finds nothing: simulate an answer lost before arrival.
    order = LiveOrder(1, "r7-1", h.instrument, "MSFT", AssetType.EQUITY, Intent.BUY, OrderType.MARKET, TimeInForce.DAY,
                      Decimal(1), None, None, None, None, "buy", NOW)
    h.broker.resume(orders=[order], execution_ids=set(), last_order_id=1)
    h.settle(lambda: order.state is OrderState.REJECTED)
    assert "not received by the broker" in order.reason and alpaca.order_posts == []


def test_no_order_is_sent_once_the_guard_says_killed(alpaca, harness):
    killed = threading.Event()

    @contextlib.contextmanager
    def guard():
        yield not killed.is_set()

    alpaca.fill_mode = "hold"
    h = harness(guard=guard)
    first = h.place("1")
    killed.set()
    second = h.place("1")
    assert second.state is OrderState.CANCELLED and "killed" in second.reason
    assert [p.client_order_id for p in alpaca.order_posts] == ["r7-1"]
    h.broker.stop(NOW, wait_seconds=3)
    assert first.state is OrderState.CANCELLED and alpaca.orders_by_client("r7-")[0]["status"] == "canceled"


def test_stop_cancels_working_orders_and_lists_open_positions(alpaca, harness):
    h = harness()
    filled = h.place("4")
    h.settle(lambda: filled.state is OrderState.FILLED)
    alpaca.fill_mode = "hold"
    working = h.place("2", order_type=OrderType.LIMIT, limit="90")
    h.settle(lambda: working.state is OrderState.WORKING)
    h.issues.drain()
    h.broker.stop(NOW, wait_seconds=3)
    assert working.state is OrderState.CANCELLED
    assert alpaca.positions["MSFT"][0] == 4  # never closed
    [issue] = h.issues.drain()
    assert issue.code == "positions_left_open" and "MSFT: 4" in issue.detail


def test_outside_trade_is_reported_and_drift_halts(alpaca, harness):
    h = harness()
    order = h.place("3")
    h.settle(lambda: order.state is OrderState.FILLED)
    h.broker.reconcile(NOW)
    assert h.issues.drain() == []
    alpaca.outside_trade("MSFT", "buy", "200", "100")
    h.settle(lambda: any(i.code == "outside_trade" for i in h.issues._pending.values()))
    first = h.broker.reconcile(NOW)
    assert first.position_drift == {"MSFT": (Decimal(3), Decimal(203))}
    assert not h.broker.halted
    h.broker.reconcile(NOW)
    assert h.broker.halted
    codes = {(i.code, i.severity) for i in h.issues.drain()}
    assert ("broker_drift", "error") in codes and ("outside_trade", "warning") in codes
    refused = h.place("1")
    assert refused.state is OrderState.REJECTED and "halted" in refused.reason
    assert alpaca.posts_for("r7-2") == 0


def test_positions_held_before_the_run_are_not_drift(alpaca, harness):
    alpaca.set_position("AAPL", "10", "150")
    h = harness(baseline={"AAPL": Decimal(10)})
    h.broker.reconcile(NOW)
    assert h.issues.drain() == []


def test_after_a_stream_outage_open_orders_are_looked_up_and_missed_fills_booked(alpaca, harness):
    alpaca.fill_mode = "hold"
    h = harness()
    order = h.place("4")
    h.settle(lambda: order.state is OrderState.WORKING)
    alpaca.drop_trade_streams()
    alpaca.fill("r7-1", price="99")  # sent to nobody
    alpaca.stream_muted = False
    alpaca.wait_for_listeners()
    h.settle(lambda: order.state is OrderState.FILLED)
    assert h.instrument.position.quantity == 4 and order.average_fill_price == Decimal(99)
    assert [f.execution_id for f in h.broker.fills] == ["r7-1-catch-up-4"]


def test_risk_settings_are_checked_before_sending(alpaca, harness):
    h = harness()
    short = h.place("1", intent=Intent.SELL)
    assert short.state is OrderState.REJECTED and short.reason.startswith("short not allowed")
    h.broker.core = CoreSettings.from_config({"max_order_value": 250})
    h.instrument.last_close = 100.0
    big = h.place("3")
    assert big.state is OrderState.REJECTED and big.reason.startswith("risk limit")
    assert alpaca.order_posts == []
