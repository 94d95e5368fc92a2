"""A local Alpaca: a real HTTP server (Trading REST v2 and Market Data REST v2) and two real
websocket servers (the trading stream with trade_updates, the market data stream with bars), on
127.0.0.1 ephemeral ports, in background threads. Our code is pointed at it by URL, unpatched.

It keeps an account (cash, positions, orders by id and by client_order_id) and lets a test
choose what happens to the next orders:

    with FakeAlpaca() as alpaca:
        alpaca.set_price("MSFT", "100")
        alpaca.fill_mode = "partial"          # fill | partial | hold
        alpaca.reject_next("insufficient buying power")
        alpaca.drop_next_order_responses(1)   # accept the order, then close without answering
        alpaca.outside_trade("AAPL", "buy", "5", "150")  # a trade on the account not made by us
        alpaca.emit_bar("MSFT", when, 1, 2, 0.5, 1.5, 100)
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve as ws_serve

# The server side logs frames at DEBUG too; tests that look for secrets in logs look at ours.
_QUIET = logging.getLogger("tests.fakes.alpaca_server")
_QUIET.setLevel(logging.WARNING)

KEY_ID = "PKTEST0000000000"
SECRET = "fake-secret-do-not-log-0123456789"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f") if value == value.to_integral_value() else str(value)


@dataclass
class OrderPost:
    at: float  # time.monotonic() when the request arrived
    client_order_id: str
    dropped: bool = False
    rejected: bool = False


class FakeAlpaca:
    def __init__(self, *, key_id: str = KEY_ID, secret: str = SECRET, cash: str = "100000"):
        self.key_id, self.secret = key_id, secret
        self.lock = threading.RLock()
        self.cash = Decimal(cash)
        self.positions: dict[str, list[Decimal]] = {}  # symbol -> [signed qty, average entry price]
        self.orders: dict[str, dict] = {}  # broker order id -> order JSON (the values kept as Decimal)
        self.by_client: dict[str, str] = {}
        self.prices: dict[str, Decimal] = {}
        self.stream_muted = False  # True: trade updates are recorded but not sent (a stream outage)
        self.fill_mode = "fill"  # market orders: fill at once | partial (partial_quantity now) | hold
        self.partial_quantity = Decimal(1)
        self._rejections: list[tuple[str, str]] = []  # (message, "http" | "stream")
        self._drops = 0
        self.order_posts: list[OrderPost] = []
        self.cancel_requests: list[str] = []
        self.requests: list[tuple[float, str, str]] = []  # (time.monotonic(), method, path) of every REST call
        self.history: dict[str, list[dict]] = {}
        self.events: list[dict] = []  # every trade update sent
        self._trade_clients: list = []
        self._data_clients: dict = {}  # connection -> subscribed symbols
        self.headers_seen: list[dict] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> FakeAlpaca:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._trade_ws = ws_serve(self._trade_stream, "127.0.0.1", 0, logger=_QUIET)
        self._data_ws = ws_serve(self._data_stream, "127.0.0.1", 0, logger=_QUIET)
        self._threads = [
            threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True),
            threading.Thread(target=self._trade_ws.serve_forever, daemon=True),
            threading.Thread(target=self._data_ws.serve_forever, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        http_port = self._http.server_address[1]
        self.trading_url = self.data_url = f"http://127.0.0.1:{http_port}"
        self.trading_stream_url = f"ws://127.0.0.1:{self._trade_ws.socket.getsockname()[1]}/stream"
        self.data_stream_url = f"ws://127.0.0.1:{self._data_ws.socket.getsockname()[1]}"

    def stop(self) -> None:
        # Close the stream connections first: a server waits for its connection handlers.
        for connection in [*self._trade_clients, *self._data_clients]:
            with contextlib.suppress(Exception):
                connection.close()
        self._http.shutdown()
        self._http.server_close()
        self._trade_ws.shutdown()
        self._data_ws.shutdown()

    # -- scenario controls ---------------------------------------------------------------------
    def set_price(self, symbol: str, price) -> None:
        self.prices[symbol] = Decimal(str(price))

    def reject_next(self, message: str, *, via: str = "http") -> None:
        """The next order is refused: at once with HTTP 403 (via="http"), or accepted and then
        rejected on the stream (via="stream")."""
        with self.lock:
            self._rejections.append((message, via))

    def drop_next_order_responses(self, count: int = 1) -> None:
        """Accept the next `count` orders but close the connection instead of answering."""
        with self.lock:
            self._drops += count

    def posts_for(self, client_order_id: str) -> int:
        return sum(1 for post in self.order_posts if post.client_order_id == client_order_id)

    def orders_by_client(self, prefix: str = "") -> list[dict]:
        with self.lock:
            return [order for order in self.orders.values() if order["client_order_id"].startswith(prefix)]

    def fill(self, client_order_id: str, quantity=None, price=None) -> None:
        """Fill (part of) a working order now."""
        with self.lock:
            order = self.orders[self.by_client[client_order_id]]
            left = order["qty"] - order["filled_qty"]
            qty = left if quantity is None else min(Decimal(str(quantity)), left)
            self._execute(order, qty, Decimal(str(price)) if price is not None else self.prices.get(order["symbol"], Decimal(100)))

    def outside_trade(self, symbol: str, side: str, quantity, price) -> dict:
        """A trade on the account that none of our runs made (someone used the account by hand)."""
        with self.lock:
            order = self._new_order({
                "symbol": symbol, "side": side, "type": "market", "time_in_force": "day", "qty": str(quantity),
                "client_order_id": f"manual-{uuid.uuid4().hex[:12]}",
            })
            self._emit("new", order)
            self._execute(order, Decimal(str(quantity)), Decimal(str(price)))
            return order

    def set_position(self, symbol: str, quantity, price) -> None:
        """Change the account's position directly (as a corporate action or a transfer would)."""
        with self.lock:
            self.positions[symbol] = [Decimal(str(quantity)), Decimal(str(price))]

    def add_history(self, symbol: str, bars: list[tuple]) -> None:
        """Stored bars served on REST: (time, open, high, low, close, volume)."""
        self.history.setdefault(symbol, []).extend(
            {"t": t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "o": o, "h": h, "l": low, "c": c, "v": v, "n": 1, "vw": c}
            for t, o, h, low, c, v in bars
        )

    def emit_bar(self, symbol: str, when: datetime, open_, high, low, close, volume) -> int:
        """Send a minute bar to data stream clients subscribed to `symbol`; returns how many got it."""
        message = [{
            "T": "b", "S": symbol, "o": open_, "h": high, "l": low, "c": close, "v": volume,
            "t": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "n": 1, "vw": close,
        }]
        sent = 0
        for connection, symbols in list(self._data_clients.items()):
            if symbol in symbols or "*" in symbols:
                try:
                    connection.send(json.dumps(message))
                    sent += 1
                except (ConnectionClosed, OSError):
                    self._data_clients.pop(connection, None)
        return sent

    def drop_trade_streams(self) -> None:
        """Close every trading stream connection (an outage: what happens next is not sent)."""
        self.stream_muted = True
        for connection in list(self._trade_clients):
            self._forget(connection)
            connection.close()

    def data_subscribers(self, symbol: str) -> int:
        return sum(1 for symbols in self._data_clients.values() if symbol in symbols)

    def trade_listeners(self) -> int:
        return len(self._trade_clients)

    def wait_for_listeners(self, count: int = 1, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.trade_listeners() < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.trade_listeners() >= count, "nobody listens to trade_updates"

    # -- account state -------------------------------------------------------------------------
    def _order_json(self, order: dict) -> dict:
        out = {}
        for key, value in order.items():
            out[key] = _text(value) if isinstance(value, Decimal) else value
        return out

    def _new_order(self, body: dict) -> dict:
        now = _now()
        order = {
            "id": str(uuid.uuid4()),
            "client_order_id": body.get("client_order_id") or str(uuid.uuid4()),
            "created_at": now, "updated_at": now, "submitted_at": now, "filled_at": None, "canceled_at": None,
            "expired_at": None, "failed_at": None, "asset_class": "us_equity", "symbol": body["symbol"],
            "qty": Decimal(str(body["qty"])) if body.get("qty") is not None else None,
            "notional": Decimal(str(body["notional"])) if body.get("notional") is not None else None,
            "filled_qty": Decimal(0), "filled_avg_price": None, "order_class": "", "order_type": body["type"],
            "type": body["type"], "side": body["side"], "time_in_force": body["time_in_force"],
            "limit_price": Decimal(str(body["limit_price"])) if body.get("limit_price") is not None else None,
            "stop_price": Decimal(str(body["stop_price"])) if body.get("stop_price") is not None else None,
            "status": "new", "extended_hours": False,
        }
        self.orders[order["id"]] = order
        self.by_client[order["client_order_id"]] = order["id"]
        return order

    def _execute(self, order: dict, qty: Decimal, price: Decimal) -> None:
        if qty <= 0:
            return
        signed = qty if order["side"] == "buy" else -qty
        held, average = self.positions.get(order["symbol"], [Decimal(0), Decimal(0)])
        total = held + signed
        if held == 0 or (held > 0) == (signed > 0):
            average = (average * abs(held) + price * qty) / abs(total) if total else Decimal(0)
        elif total != 0 and (total > 0) != (held > 0):
            average = price
        if total == 0:
            self.positions.pop(order["symbol"], None)
        else:
            self.positions[order["symbol"]] = [total, average]
        self.cash -= signed * price
        cost = (order["filled_avg_price"] or Decimal(0)) * order["filled_qty"] + price * qty
        order["filled_qty"] += qty
        order["filled_avg_price"] = (cost / order["filled_qty"]).quantize(Decimal("0.0001"))
        order["updated_at"] = _now()
        done = order["qty"] is not None and order["filled_qty"] >= order["qty"]
        order["status"] = "filled" if done else "partially_filled"
        if done:
            order["filled_at"] = order["updated_at"]
        self._emit("fill" if done else "partial_fill", order, execution_id=str(uuid.uuid4()), qty=qty, price=price, position_qty=total)

    def _emit(self, event: str, order: dict, **extra) -> None:
        data = {"event": event, "timestamp": _now(), "order": self._order_json(order)}
        for key, value in extra.items():
            data[key] = _text(value) if isinstance(value, Decimal) else value
        message = {"stream": "trade_updates", "data": data}
        self.events.append(message)
        if self.stream_muted:
            return
        frame = json.dumps(message).encode()  # binary frames, as the paper trading stream sends
        for connection in list(self._trade_clients):
            try:
                connection.send(frame)
            except (ConnectionClosed, OSError):
                self._forget(connection)

    def account_json(self) -> dict:
        with self.lock:
            value = self.cash + sum((qty * self.prices.get(s, avg) for s, (qty, avg) in self.positions.items()), Decimal(0))
            return {
                "id": "00000000-0000-0000-0000-000000000000", "account_number": "PA0FAKE", "status": "ACTIVE",
                "currency": "USD", "cash": _text(self.cash), "portfolio_value": _text(value), "equity": _text(value),
                "buying_power": _text(max(self.cash, Decimal(0)) * 2), "trading_blocked": False, "account_blocked": False,
                "pattern_day_trader": False, "shorting_enabled": True,
            }

    def positions_json(self) -> list[dict]:
        with self.lock:
            rows = []
            for symbol, (qty, avg) in sorted(self.positions.items()):
                price = self.prices.get(symbol, avg)
                rows.append({
                    "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol, "exchange": "NASDAQ",
                    "asset_class": "us_equity", "qty": _text(abs(qty)) if qty > 0 else _text(qty), "side": "long" if qty > 0 else "short",
                    "avg_entry_price": _text(avg), "current_price": _text(price), "market_value": _text(qty * price),
                    "cost_basis": _text(qty * avg), "unrealized_pl": _text((price - avg) * qty),
                })
            return rows

    # -- REST ----------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, body: dict | None, headers) -> tuple[int, object] | None:
        """(status, JSON body), or None to drop the connection without answering."""
        self.requests.append((time.monotonic(), method, path))
        if headers.get("APCA-API-KEY-ID") != self.key_id or headers.get("APCA-API-SECRET-KEY") != self.secret:
            return 401, {"code": 40110000, "message": "request is not authorized"}
        if method == "GET" and path == "/v2/account":
            return 200, self.account_json()
        if method == "GET" and path == "/v2/positions":
            return 200, self.positions_json()
        if method == "POST" and path == "/v2/orders":
            return self._post_order(body or {})
        if method == "GET" and path == "/v2/orders:by_client_order_id":
            with self.lock:
                order_id = self.by_client.get((query.get("client_order_id") or [""])[0])
                if order_id is None:
                    return 404, {"code": 40410000, "message": "order not found"}
                return 200, self._order_json(self.orders[order_id])
        if method == "GET" and path == "/v2/orders":
            status = (query.get("status") or ["open"])[0]
            with self.lock:
                orders = list(self.orders.values())
            if status == "open":
                orders = [o for o in orders if o["status"] in ("new", "partially_filled", "accepted", "pending_new")]
            elif status == "closed":
                orders = [o for o in orders if o["status"] not in ("new", "partially_filled", "accepted", "pending_new")]
            limit = int((query.get("limit") or ["50"])[0])
            return 200, [self._order_json(o) for o in sorted(orders, key=lambda o: o["created_at"], reverse=True)[:limit]]
        if method == "DELETE" and path.startswith("/v2/orders/"):
            return self._cancel(path.rsplit("/", 1)[1])
        if method == "GET" and path.startswith("/v2/stocks/") and path.endswith("/bars"):
            return self._bars(path.split("/")[3], query)
        return 404, {"code": 40410000, "message": f"not found: {method} {path}"}

    def _post_order(self, body: dict):
        with self.lock:
            post = OrderPost(time.monotonic(), str(body.get("client_order_id") or ""))
            self.order_posts.append(post)
            if post.client_order_id in self.by_client:
                return 422, {"code": 40010001, "message": "client_order_id must be unique"}
            for name in ("symbol", "side", "type", "time_in_force"):
                if not body.get(name):
                    return 422, {"code": 40010000, "message": f"{name} is required"}
            if (body.get("qty") is None) == (body.get("notional") is None):
                return 422, {"code": 40010000, "message": "qty or notional is required"}
            rejection = self._rejections.pop(0) if self._rejections else None
            if rejection is not None and rejection[1] == "http":
                post.rejected = True
                return 403, {"code": 40310000, "message": rejection[0]}
            order = self._new_order(body)
            if rejection is not None:
                order["status"] = "rejected"
                order["failed_at"] = order["updated_at"] = _now()
                self._emit("rejected", order)
            else:
                self._emit("new", order)
                if order["type"] == "market" and order["qty"] is not None:
                    price = self.prices.get(order["symbol"], Decimal(100))
                    if self.fill_mode == "fill":
                        self._execute(order, order["qty"], price)
                    elif self.fill_mode == "partial":
                        self._execute(order, min(self.partial_quantity, order["qty"]), price)
            if self._drops:
                self._drops -= 1
                post.dropped = True
                return None
            return 200, self._order_json(order)

    def _cancel(self, order_id: str):
        with self.lock:
            self.cancel_requests.append(order_id)
            order = self.orders.get(order_id)
            if order is None:
                return 404, {"code": 40410000, "message": "order not found"}
            if order["status"] not in ("new", "partially_filled", "accepted", "pending_new"):
                return 422, {"code": 42210000, "message": f"order is already in \"{order['status']}\" state"}
            order["status"] = "canceled"
            order["canceled_at"] = order["updated_at"] = _now()
            self._emit("canceled", order)
            return 204, None

    def _bars(self, symbol: str, query: dict):
        start = (query.get("start") or [""])[0]
        end = (query.get("end") or [""])[0]
        limit = int((query.get("limit") or ["1000"])[0])
        offset = int((query.get("page_token") or ["0"])[0])

        def key(text: str) -> str:
            return text[:19]

        rows = [b for b in self.history.get(symbol, []) if (not start or key(b["t"]) >= key(start)) and (not end or key(b["t"]) < key(end))]
        page = rows[offset:offset + limit]
        token = str(offset + limit) if offset + limit < len(rows) else None
        return 200, {"bars": page, "symbol": symbol, "next_page_token": token}

    # -- streams -------------------------------------------------------------------------------
    def _trade_stream(self, connection) -> None:
        try:
            auth = json.loads(connection.recv(timeout=10))
            if auth.get("action") != "auth" or auth.get("key") != self.key_id or auth.get("secret") != self.secret:
                connection.send(json.dumps({"stream": "authorization", "data": {"action": "authenticate", "status": "unauthorized"}}).encode())
                return
            connection.send(json.dumps({"stream": "authorization", "data": {"action": "authenticate", "status": "authorized"}}).encode())
            listen = json.loads(connection.recv(timeout=10))
            streams = (listen.get("data") or {}).get("streams") or []
            connection.send(json.dumps({"stream": "listening", "data": {"streams": [s for s in streams if s == "trade_updates"]}}).encode())
            if "trade_updates" in streams:
                self._trade_clients.append(connection)
            for _ in connection:  # keep the connection open until the client leaves
                pass
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            self._forget(connection)

    def _forget(self, connection) -> None:
        with contextlib.suppress(ValueError):
            self._trade_clients.remove(connection)

    def _data_stream(self, connection) -> None:
        try:
            connection.send(json.dumps([{"T": "success", "msg": "connected"}]))
            auth = json.loads(connection.recv(timeout=10))
            if auth.get("key") != self.key_id or auth.get("secret") != self.secret:
                connection.send(json.dumps([{"T": "error", "code": 402, "msg": "auth failed"}]))
                return
            connection.send(json.dumps([{"T": "success", "msg": "authenticated"}]))
            for raw in connection:
                message = json.loads(raw)
                if message.get("action") == "subscribe":
                    symbols = self._data_clients.setdefault(connection, set())
                    symbols.update(message.get("bars") or [])
                    connection.send(json.dumps([{
                        "T": "subscription", "trades": [], "quotes": [], "bars": sorted(symbols), "updatedBars": [],
                        "dailyBars": [], "statuses": [], "lulds": [], "corrections": [], "cancelErrors": [],
                    }]))
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            self._data_clients.pop(connection, None)


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeAlpaca
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet
        pass

    def _serve(self, method: str) -> None:
        parsed = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        result = self.server_fake.handle(method, parsed.path, parse_qs(parsed.query), body, self.headers)
        if result is None:
            self.close_connection = True
            self.connection.shutdown(2)  # the order was taken; the answer never comes
            return
        status, payload = result
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_DELETE(self):
        self._serve("DELETE")
