"""The Alpaca adapter against a local server speaking Alpaca's REST and stream protocols."""

import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from runs.adapters.alpaca import (
    AlpacaAuthError,
    AlpacaMarketDataClient,
    AlpacaNotFound,
    AlpacaOutcomeUnknown,
    AlpacaRejected,
    AlpacaTradingClient,
    AlpacaUnavailable,
    BarStream,
    Credentials,
    TradeUpdatesStream,
    drain,
    parse_time,
)
from tests.fakes.alpaca_server import KEY_ID, SECRET, FakeAlpaca

CREDENTIALS = Credentials(KEY_ID, SECRET)


@pytest.fixture
def alpaca():
    with FakeAlpaca() as server:
        yield server


@pytest.fixture
def client(alpaca):
    trading = AlpacaTradingClient(alpaca.trading_url, CREDENTIALS, timeout=3)
    yield trading
    trading.close()


def _updates(stream, count, timeout=5.0):
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(drain(stream.updates, wait=0.1))
    return got


def _market(client, cid, qty="3", symbol="MSFT", side="buy"):
    return client.submit_order(client_order_id=cid, symbol=symbol, side=side, type="market", time_in_force="day", qty=Decimal(qty))


def test_account_positions_and_a_filled_order(alpaca, client):
    alpaca.set_price("MSFT", "101.25")
    order = _market(client, "r1-1")
    assert (order.client_order_id, order.status, order.filled_qty, order.filled_avg_price) == ("r1-1", "filled", 3, Decimal("101.25"))
    account = client.account()
    assert account.cash == Decimal("100000") - 3 * Decimal("101.25")
    [position] = client.positions()
    assert (position.symbol, position.qty, position.avg_entry_price) == ("MSFT", 3, Decimal("101.25"))
    assert client.order_by_client_order_id("r1-1").id == order.id
    assert client.order_by_client_order_id("never-sent") is None


def test_credentials_are_sent_in_headers_and_refused_when_wrong(alpaca):
    bad = AlpacaTradingClient(alpaca.trading_url, Credentials(KEY_ID, "wrong"), timeout=3)
    with pytest.raises(AlpacaAuthError):
        bad.account()
    assert SECRET not in repr(CREDENTIALS) and SECRET not in str(CREDENTIALS)


def test_rejection_carries_alpacas_message(alpaca, client):
    alpaca.reject_next("insufficient buying power")
    with pytest.raises(AlpacaRejected) as raised:
        _market(client, "r1-1")
    assert raised.value.message == "insufficient buying power" and raised.value.status == 403
    with pytest.raises(AlpacaRejected, match="client_order_id must be unique"):
        _market(client, "r1-2")
        _market(client, "r1-2")


def test_dropped_answer_is_outcome_unknown_and_the_order_exists(alpaca, client):
    alpaca.drop_next_order_responses(1)
    with pytest.raises(AlpacaOutcomeUnknown):
        _market(client, "r1-7")
    assert client.order_by_client_order_id("r1-7").status == "filled"
    assert alpaca.posts_for("r1-7") == 1


def test_unreachable_and_not_found_are_classified(alpaca, client):
    with pytest.raises(AlpacaNotFound):
        client.request("GET", "/v2/nothing-here")
    closed = AlpacaTradingClient("http://127.0.0.1:9", CREDENTIALS, timeout=1)
    with pytest.raises(AlpacaUnavailable) as raised:
        closed.account()
    assert not isinstance(raised.value, AlpacaOutcomeUnknown)  # nothing was sent


def test_cancel_of_working_and_final_orders(alpaca, client):
    alpaca.fill_mode = "hold"
    order = _market(client, "r1-1")
    client.cancel_order(order.id)
    assert client.order_by_client_order_id("r1-1").status == "canceled"
    client.cancel_order(order.id)  # already final: not an error
    assert [o.client_order_id for o in client.orders(status="closed")] == ["r1-1"]
    assert client.orders(status="open") == []


def test_trade_updates_stream_full_and_partial_fills(alpaca, client):
    stream = TradeUpdatesStream(alpaca.trading_stream_url, CREDENTIALS, timeout=3)
    stream.start()
    try:
        assert stream.wait_connected(5)
        alpaca.fill_mode = "partial"
        alpaca.partial_quantity = Decimal(2)
        alpaca.set_price("MSFT", "50")
        _market(client, "r1-1", qty="5")
        alpaca.fill("r1-1", price="51")
        events = _updates(stream, 3)
        assert [e.event for e in events] == ["new", "partial_fill", "fill"]
        assert [(e.qty, e.price) for e in events[1:]] == [(2, 50), (3, 51)]
        assert len({e.execution_id for e in events[1:]}) == 2 and all(e.execution_id for e in events[1:])
        assert events[2].order.filled_qty == 5 and events[2].position_qty == 5
    finally:
        stream.stop()


def test_trade_updates_stream_refuses_bad_keys(alpaca):
    stream = TradeUpdatesStream(alpaca.trading_stream_url, Credentials(KEY_ID, "wrong"), timeout=3)
    stream.start()
    try:
        with pytest.raises(AlpacaAuthError):
            stream.wait_connected(5)
    finally:
        stream.stop()


def test_history_bars_page_through(alpaca):
    start = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    alpaca.add_history("MSFT", [(start + timedelta(minutes=i), 1 + i, 2 + i, 0.5 + i, 1.5 + i, 100) for i in range(25)])
    data = AlpacaMarketDataClient(alpaca.data_url, CREDENTIALS, timeout=3)
    bars = data.bars("MSFT", timeframe="1Min", start=start, end=start + timedelta(minutes=20), limit=7)
    assert len(bars) == 20 and bars[0].time == start and bars[-1].open == 20
    assert sum(1 for _, method, path in alpaca.requests if path == "/v2/stocks/MSFT/bars") == 3


def test_bar_stream_subscribes_and_receives_bars(alpaca):
    stream = BarStream(alpaca.data_stream_url + "/v2/iex", CREDENTIALS, ["MSFT"], timeout=3)
    stream.start()
    try:
        assert stream.wait_connected(5)
        when = datetime(2026, 1, 5, 14, 31, tzinfo=UTC)
        assert alpaca.emit_bar("MSFT", when, 10, 11, 9, 10.5, 1200) == 1
        assert alpaca.emit_bar("AAPL", when, 1, 1, 1, 1, 1) == 0
        bars = list(drain(stream.bars, wait=3))
        assert [(b.symbol, b.time, b.close, b.volume) for b in bars] == [("MSFT", when, 10.5, 1200.0)]
    finally:
        stream.stop()


def test_bar_stream_refuses_bad_keys(alpaca):
    stream = BarStream(alpaca.data_stream_url + "/v2/iex", Credentials("nope", "nope"), ["MSFT"], timeout=3)
    stream.start()
    try:
        with pytest.raises(AlpacaAuthError):
            stream.wait_connected(5)
    finally:
        stream.stop()


def test_times_with_nanoseconds_parse():
    assert parse_time("2021-03-16T18:38:01.942282154Z") == datetime(2021, 3, 16, 18, 38, 1, 942282, tzinfo=UTC)
    assert parse_time("2021-03-16T18:38:01Z") == datetime(2021, 3, 16, 18, 38, 1, tzinfo=UTC)


def test_the_secret_is_never_logged_even_at_debug(alpaca, caplog):
    caplog.set_level(logging.DEBUG)
    client = AlpacaTradingClient(alpaca.trading_url, CREDENTIALS, timeout=3)
    client.account()
    stream = TradeUpdatesStream(alpaca.trading_stream_url, CREDENTIALS, timeout=3)
    stream.start()
    try:
        assert stream.wait_connected(5)
    finally:
        stream.stop()
    assert caplog.records  # something was logged
    # websockets' frame logging shortens long messages: no piece of the secret may show either.
    assert not any(SECRET[i:i + 8] in caplog.text for i in range(len(SECRET) - 7))
