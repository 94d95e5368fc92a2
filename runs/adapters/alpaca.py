"""Alpaca over its public protocols, Django-free: Trading REST v2, the trading stream
(trade_updates), Market Data REST v2 (bars) and the market data stream (bars); and
AlpacaRealtimeFeed, the engine's RealtimeFeed (runs.engine.realtime) over the latter.

Plain HTTP (httpx) and websockets (the sync client), timeouts on every call. Errors are classified
so callers can act on them without reading messages:
- AlpacaAuthError: the key pair was refused (401, or 403 on the stream's auth);
- AlpacaRejected: the request was understood and refused, with Alpaca's message (403, 404, 422);
- AlpacaUnavailable: the service could not be reached or failed (connection, 429, 5xx);
- AlpacaOutcomeUnknown (an AlpacaUnavailable): the request may have reached Alpaca, but no answer
  came back (a timeout or a dropped connection after sending). For an order this means "look it
  up by client_order_id", never "send it again".

Credentials are held in a `Credentials` whose repr hides the secret; they are sent only in the
APCA-API-* headers and the streams' auth messages, never logged.

Docs: https://docs.alpaca.markets/reference (Trading API, Market Data API, streaming).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect as ws_connect

from runs.engine.realtime import FeedBar, bar_times
from strategies.sdk.enums import BarFrequency

logger = logging.getLogger(__name__)
# websockets logs every frame at DEBUG, the auth message (with the secret) included: its
# logger for our connections never goes below INFO, whatever the root level.
_socket_logger = logging.getLogger(f"{__name__}.websocket")
_socket_logger.setLevel(logging.INFO)

PAPER_TRADING_URL = "https://paper-api.alpaca.markets"
LIVE_TRADING_URL = "https://api.alpaca.markets"
PAPER_TRADING_STREAM_URL = "wss://paper-api.alpaca.markets/stream"
LIVE_TRADING_STREAM_URL = "wss://api.alpaca.markets/stream"
DATA_URL = "https://data.alpaca.markets"
DATA_STREAM_URL = "wss://stream.data.alpaca.markets"  # + /v2/{feed}

DEFAULT_TIMEOUT = 10.0  # seconds, for every REST call and stream handshake
STREAM_RECEIVE_TIMEOUT = 1.0  # how often a stream thread looks up from its socket to check for stop
RECONNECT_DELAYS = (0.5, 1, 2, 5, 10, 30)  # seconds between stream reconnects, the last repeated

# Order statuses after which nothing more happens to the order.
FINAL_STATUSES = frozenset({"filled", "canceled", "expired", "rejected", "replaced", "done_for_day", "stopped", "suspended"})
OPEN_STATUSES = frozenset({
    "new", "partially_filled", "accepted", "pending_new", "accepted_for_bidding", "pending_cancel", "pending_replace", "calculated", "held",
})


# -- errors ---------------------------------------------------------------------------------
class AlpacaError(Exception):
    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        self.message, self.status, self.code = message, status, code
        super().__init__(message)


class AlpacaAuthError(AlpacaError):
    """The key pair was refused: check the account's credentials."""


class AlpacaRejected(AlpacaError):
    """Alpaca understood the request and refused it; `message` is Alpaca's."""


class AlpacaNotFound(AlpacaRejected):
    """404: no such object (an order looked up by an id Alpaca never received)."""


class AlpacaUnavailable(AlpacaError):
    """Alpaca could not be reached, was rate limiting, or failed (5xx): try again later."""


class AlpacaOutcomeUnknown(AlpacaUnavailable):
    """The request may have been received: no answer came back."""


@dataclass(frozen=True)
class Credentials:
    key_id: str
    secret: str = field(repr=False)

    def __repr__(self) -> str:  # the dataclass repr already hides the secret; keep it explicit
        return f"Credentials(key_id={self.key_id[:4]}…)"

    @property
    def headers(self) -> dict[str, str]:
        return {"APCA-API-KEY-ID": self.key_id, "APCA-API-SECRET-KEY": self.secret}


# -- values ---------------------------------------------------------------------------------
def parse_time(value: str | None) -> datetime | None:
    """RFC 3339 as Alpaca writes it (Z, up to nanoseconds) → aware UTC datetime."""
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = rest
        zone = ""
        for i, char in enumerate(rest):
            if not char.isdigit():
                digits, zone = rest[:i], rest[i:]
                break
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class AlpacaOrder:
    id: str
    client_order_id: str
    symbol: str
    side: str  # buy | sell
    type: str  # market | limit | stop | stop_limit | trailing_stop
    time_in_force: str
    status: str
    qty: Decimal | None
    notional: Decimal | None
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    created_at: datetime | None
    updated_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.status not in FINAL_STATUSES

    @classmethod
    def from_json(cls, data: dict) -> AlpacaOrder:
        return cls(
            id=str(data.get("id") or ""),
            client_order_id=str(data.get("client_order_id") or ""),
            symbol=str(data.get("symbol") or ""),
            side=str(data.get("side") or ""),
            type=str(data.get("type") or data.get("order_type") or ""),
            time_in_force=str(data.get("time_in_force") or ""),
            status=str(data.get("status") or ""),
            qty=_decimal(data.get("qty")),
            notional=_decimal(data.get("notional")),
            filled_qty=_decimal(data.get("filled_qty")) or Decimal(0),
            filled_avg_price=_decimal(data.get("filled_avg_price")),
            limit_price=_decimal(data.get("limit_price")),
            stop_price=_decimal(data.get("stop_price")),
            created_at=parse_time(data.get("created_at")),
            updated_at=parse_time(data.get("updated_at")),
        )


@dataclass(frozen=True)
class AlpacaPosition:
    symbol: str
    asset_class: str
    qty: Decimal  # signed: negative is short
    avg_entry_price: Decimal
    current_price: Decimal | None
    market_value: Decimal | None

    @classmethod
    def from_json(cls, data: dict) -> AlpacaPosition:
        qty = _decimal(data.get("qty")) or Decimal(0)
        if data.get("side") == "short" and qty > 0:
            qty = -qty
        return cls(
            symbol=str(data.get("symbol") or ""),
            asset_class=str(data.get("asset_class") or "us_equity"),
            qty=qty,
            avg_entry_price=_decimal(data.get("avg_entry_price")) or Decimal(0),
            current_price=_decimal(data.get("current_price")),
            market_value=_decimal(data.get("market_value")),
        )


@dataclass(frozen=True)
class AlpacaAccount:
    account_number: str
    status: str
    currency: str
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    trading_blocked: bool

    @classmethod
    def from_json(cls, data: dict) -> AlpacaAccount:
        return cls(
            account_number=str(data.get("account_number") or ""),
            status=str(data.get("status") or ""),
            currency=str(data.get("currency") or "USD"),
            cash=_decimal(data.get("cash")) or Decimal(0),
            equity=_decimal(data.get("equity") or data.get("portfolio_value")) or Decimal(0),
            buying_power=_decimal(data.get("buying_power")) or Decimal(0),
            trading_blocked=bool(data.get("trading_blocked") or data.get("account_blocked")),
        )


@dataclass(frozen=True)
class TradeUpdate:
    """One message of the trade_updates stream. `execution_id`, `qty` and `price` are set on
    fill and partial_fill events (qty and price of that execution)."""

    event: str  # new | fill | partial_fill | canceled | expired | rejected | done_for_day | replaced | pending_new …
    order: AlpacaOrder
    timestamp: datetime | None
    execution_id: str = ""
    qty: Decimal | None = None
    price: Decimal | None = None
    position_qty: Decimal | None = None

    @classmethod
    def from_json(cls, data: dict) -> TradeUpdate:
        return cls(
            event=str(data.get("event") or ""),
            order=AlpacaOrder.from_json(data.get("order") or {}),
            timestamp=parse_time(data.get("timestamp")),
            execution_id=str(data.get("execution_id") or ""),
            qty=_decimal(data.get("qty")),
            price=_decimal(data.get("price")),
            position_qty=_decimal(data.get("position_qty")),
        )


@dataclass(frozen=True)
class AlpacaBar:
    symbol: str
    time: datetime  # the bar's open time
    open: float
    high: float
    low: float
    close: float
    volume: float

    @classmethod
    def from_json(cls, data: dict, symbol: str | None = None) -> AlpacaBar:
        return cls(
            symbol=str(symbol or data.get("S") or ""),
            time=parse_time(data["t"]),
            open=float(data["o"]),
            high=float(data["h"]),
            low=float(data["l"]),
            close=float(data["c"]),
            volume=float(data.get("v") or 0),
        )


# -- REST -----------------------------------------------------------------------------------
def _error_message(response: httpx.Response) -> tuple[str, int | None]:
    try:
        body = response.json()
    except ValueError:
        return (response.text.strip()[:300] or response.reason_phrase), None
    if isinstance(body, dict):
        return str(body.get("message") or body)[:300], body.get("code")
    return str(body)[:300], None


class _RestClient:
    def __init__(self, base_url: str, credentials: Credentials, *, timeout: float = DEFAULT_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=credentials.headers, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, params: dict | None = None, body: dict | None = None, idempotent: bool = True):
        """JSON in, JSON out. `idempotent=False` (placing an order): a failure after the request
        may have been sent raises AlpacaOutcomeUnknown."""
        try:
            response = self._http.request(method, path, params=params, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing was sent: no connection was made.
            raise AlpacaUnavailable(f"cannot reach Alpaca at {self.base_url}: {type(exc).__name__}") from None
        except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            error = AlpacaUnavailable if idempotent else AlpacaOutcomeUnknown
            raise error(f"no answer from Alpaca for {method} {path}: {type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            raise AlpacaUnavailable(f"{method} {path} failed: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status < 300:
            if status == 204 or not response.content:
                return None
            return response.json()
        message, code = _error_message(response)
        if status == 401:
            raise AlpacaAuthError(f"Alpaca refused the credentials: {message}", status=status, code=code)
        if status == 404:
            raise AlpacaNotFound(message, status=status, code=code)
        if status == 429 or status >= 500:
            raise AlpacaUnavailable(f"Alpaca answered {status}: {message}", status=status, code=code)
        raise AlpacaRejected(message, status=status, code=code)


class AlpacaTradingClient(_RestClient):
    """Trading API v2: account, positions, orders."""

    def account(self) -> AlpacaAccount:
        return AlpacaAccount.from_json(self.request("GET", "/v2/account"))

    def positions(self) -> list[AlpacaPosition]:
        return [AlpacaPosition.from_json(item) for item in self.request("GET", "/v2/positions") or []]

    def submit_order(
        self,
        *,
        client_order_id: str,
        symbol: str,
        side: str,
        type: str,
        time_in_force: str,
        qty: Decimal | None = None,
        notional: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> AlpacaOrder:
        body = {"symbol": symbol, "side": side, "type": type, "time_in_force": time_in_force, "client_order_id": client_order_id}
        for name, value in (("qty", qty), ("notional", notional), ("limit_price", limit_price), ("stop_price", stop_price)):
            if value is not None:
                body[name] = str(value)
        return AlpacaOrder.from_json(self.request("POST", "/v2/orders", body=body, idempotent=False))

    def order_by_client_order_id(self, client_order_id: str) -> AlpacaOrder | None:
        try:
            data = self.request("GET", "/v2/orders:by_client_order_id", params={"client_order_id": client_order_id})
        except AlpacaNotFound:
            return None
        return AlpacaOrder.from_json(data)

    def orders(self, *, status: str = "open", after: datetime | None = None, limit: int = 500) -> list[AlpacaOrder]:
        """Orders by status (open | closed | all), newest first; pages back with `until`."""
        params: dict = {"status": status, "limit": limit, "direction": "desc"}
        if after is not None:
            params["after"] = format_time(after)
        found: list[AlpacaOrder] = []
        while True:
            page = [AlpacaOrder.from_json(item) for item in self.request("GET", "/v2/orders", params=params) or []]
            found.extend(page)
            if len(page) < limit:
                return found
            params["until"] = format_time(min(o.created_at for o in page if o.created_at))

    def cancel_order(self, order_id: str) -> None:
        """Ask Alpaca to cancel; an order already final answers 422, which is not an error here."""
        try:
            self.request("DELETE", f"/v2/orders/{order_id}")
        except AlpacaRejected as exc:
            if exc.status not in (404, 422):
                raise


class AlpacaMarketDataClient(_RestClient):
    """Market Data API v2, stock bars."""

    def __init__(self, base_url: str, credentials: Credentials, *, feed: str = "iex", timeout: float = DEFAULT_TIMEOUT):
        super().__init__(base_url, credentials, timeout=timeout)
        self.feed = feed

    def bars(self, symbol: str, *, timeframe: str, start: datetime, end: datetime | None = None, limit: int = 10000) -> list[AlpacaBar]:
        """Historical bars of one symbol, oldest first, every page (`next_page_token`)."""
        params: dict = {"timeframe": timeframe, "start": format_time(start), "limit": limit, "feed": self.feed, "adjustment": "raw"}
        if end is not None:
            params["end"] = format_time(end)
        bars: list[AlpacaBar] = []
        while True:
            data = self.request("GET", f"/v2/stocks/{symbol}/bars", params=params) or {}
            bars.extend(AlpacaBar.from_json(item, symbol) for item in data.get("bars") or [])
            token = data.get("next_page_token")
            if not token:
                return bars
            params["page_token"] = token


# -- streams --------------------------------------------------------------------------------
def _frames(raw) -> list:
    """A stream frame (text, or binary on the paper trading stream) → its JSON messages."""
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("utf-8")
    data = json.loads(raw)
    return data if isinstance(data, list) else [data]


class _StreamThread:
    """A websocket kept open in a daemon thread, reconnecting with backoff; what it receives
    goes to `on_message` (called in the thread). `status` says how the latest attempt went."""

    name = "alpaca-stream"

    def __init__(self, url: str, credentials: Credentials, *, timeout: float = DEFAULT_TIMEOUT):
        self.url = url
        self._credentials = credentials
        self.timeout = timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.status = "not started"
        self.auth_error: AlpacaAuthError | None = None
        self.connections = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + STREAM_RECEIVE_TIMEOUT + 1)

    def wait_connected(self, timeout: float) -> bool:
        """True once authenticated and listening; raises AlpacaAuthError if the keys were refused."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.auth_error is not None:
                raise self.auth_error
            if self.connected.wait(0.05):
                return True
        return self.connected.is_set()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                with ws_connect(self.url, open_timeout=self.timeout, close_timeout=2, proxy=None, max_size=2**24, logger=_socket_logger) as socket:
                    self._handshake(socket)
                    self.connections += 1
                    attempt = 0
                    self.status = "connected"
                    self.connected.set()
                    self._on_connected()
                    while not self._stop.is_set():
                        try:
                            raw = socket.recv(timeout=STREAM_RECEIVE_TIMEOUT)
                        except TimeoutError:
                            continue
                        for message in _frames(raw):
                            self._receive(message)
            except AlpacaAuthError as exc:
                self.auth_error = exc
                self.status = f"refused: {exc.message}"
                return
            except (OSError, TimeoutError, ConnectionClosed, InvalidStatus, WebSocketException, ValueError, AlpacaError) as exc:
                self.status = f"disconnected: {type(exc).__name__}"
                logger.warning("%s to %s lost (%s); reconnecting", self.name, self.url, type(exc).__name__)
            self.connected.clear()
            delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
            attempt += 1
            self._stop.wait(delay)

    def _handshake(self, socket) -> None:
        raise NotImplementedError

    def _on_connected(self) -> None:
        """After each (re)connection: a subclass may catch up on what it missed."""

    def _receive(self, message: dict) -> None:
        raise NotImplementedError


STREAM_RECONNECTED = TradeUpdate(event="stream_reconnected", order=AlpacaOrder.from_json({}), timestamp=None)


class TradeUpdatesStream(_StreamThread):
    """The trading stream's trade_updates, put on `updates` (a queue the engine drains) as
    TradeUpdate values; after a reconnection, STREAM_RECONNECTED, so the consumer can look up
    what it may have missed (Alpaca does not replay)."""

    name = "alpaca-trade-updates"

    def __init__(self, url: str, credentials: Credentials, *, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(url, credentials, timeout=timeout)
        self.updates: queue.Queue[TradeUpdate] = queue.Queue()

    def _handshake(self, socket) -> None:
        socket.send(json.dumps({"action": "auth", "key": self._credentials.key_id, "secret": self._credentials.secret}))
        reply = self._reply(socket, "authorization")
        data = reply.get("data") or {}
        if data.get("status") != "authorized":
            raise AlpacaAuthError(f"the trading stream refused the credentials: {data.get('message') or data.get('status')}")
        socket.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        reply = self._reply(socket, "listening")
        if "trade_updates" not in ((reply.get("data") or {}).get("streams") or []):
            raise AlpacaUnavailable("the trading stream did not start listening to trade_updates")

    def _reply(self, socket, stream: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AlpacaUnavailable(f"no {stream} reply from the trading stream")
            for message in _frames(socket.recv(timeout=left)):
                if message.get("stream") == stream:
                    return message
                if message.get("stream") == "trade_updates":
                    self._receive(message)

    def _on_connected(self) -> None:
        if self.connections > 1:
            # Alpaca does not replay what was sent while the connection was down: tell the
            # consumer (in order with the updates) so it can look its open orders up.
            self.updates.put(STREAM_RECONNECTED)

    def _receive(self, message: dict) -> None:
        if message.get("stream") == "trade_updates":
            self.updates.put(TradeUpdate.from_json(message.get("data") or {}))


class BarStream(_StreamThread):
    """The market data stream's minute bars for `symbols`, put on `bars` as AlpacaBar values."""

    name = "alpaca-bars"

    def __init__(self, url: str, credentials: Credentials, symbols: list[str], *, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(url, credentials, timeout=timeout)
        self.symbols = list(symbols)
        self.bars: queue.Queue[AlpacaBar] = queue.Queue()

    def _handshake(self, socket) -> None:
        self._expect(socket, "success", "connected")
        socket.send(json.dumps({"action": "auth", "key": self._credentials.key_id, "secret": self._credentials.secret}))
        self._expect(socket, "success", "authenticated")
        socket.send(json.dumps({"action": "subscribe", "bars": self.symbols}))
        self._expect(socket, "subscription", None)

    def _expect(self, socket, kind: str, msg: str | None) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AlpacaUnavailable(f"no {kind} {msg or ''} message from the market data stream")
            for message in _frames(socket.recv(timeout=left)):
                kind_seen = message.get("T")
                if kind_seen == "error":
                    code, text = message.get("code"), message.get("msg", "")
                    if code in (401, 402, 403, 404) or "auth" in str(text):
                        raise AlpacaAuthError(f"the market data stream refused the credentials: {text} ({code})")
                    raise AlpacaUnavailable(f"market data stream error {code}: {text}")
                if kind_seen == kind and (msg is None or message.get("msg") == msg):
                    return message
                if kind_seen == "b":
                    self._receive(message)

    def _receive(self, message: dict) -> None:
        if message.get("T") == "b":
            self.bars.put(AlpacaBar.from_json(message))


def drain(source: queue.Queue, *, wait: float = 0.0) -> Iterator:
    """Everything waiting on a stream's queue; waits up to `wait` seconds for the first item."""
    try:
        item = source.get(timeout=wait) if wait > 0 else source.get_nowait()
    except queue.Empty:
        return
    yield item
    while True:
        try:
            yield source.get_nowait()
        except queue.Empty:
            return


class AlpacaBarFeed:
    """Real-time minute bars from Alpaca: the market data stream for live bars, REST for warm-up
    history. Bars are stamped with their open time; a minute bar is complete at open + 1 min."""

    bar_length = timedelta(minutes=1)

    def __init__(self, *, data_url: str, stream_url: str, credentials: Credentials, feed: str = "iex", timeout: float = DEFAULT_TIMEOUT):
        self.data = AlpacaMarketDataClient(data_url, credentials, feed=feed, timeout=timeout)
        self.stream_url = f"{stream_url.rstrip('/')}/v2/{feed}"
        self._credentials = credentials
        self.timeout = timeout
        self.stream: BarStream | None = None

    def start(self, symbols: list[str]) -> None:
        """Connect and subscribe; raises AlpacaAuthError / AlpacaUnavailable when that fails."""
        self.stream = BarStream(self.stream_url, self._credentials, sorted(set(symbols)), timeout=self.timeout)
        self.stream.start()
        if not self.stream.wait_connected(self.timeout):
            raise AlpacaUnavailable(f"the market data stream {self.stream_url} did not connect: {self.stream.status}")

    def history(self, symbol: str, *, start: datetime, end: datetime) -> list[AlpacaBar]:
        return self.data.bars(symbol, timeframe="1Min", start=start, end=end)

    def next_bars(self, timeout: float) -> list[AlpacaBar]:
        """The bars received since the last call, waiting up to `timeout` seconds for one."""
        if self.stream is None:
            raise RuntimeError("start() the feed first")
        return list(drain(self.stream.bars, wait=timeout))

    def close(self) -> None:
        if self.stream is not None:
            self.stream.stop()
        self.data.close()


class AlpacaRealtimeFeed:
    """The RealtimeFeed of runs.engine.realtime over Alpaca's market data stream: completed
    minute bars of equities, on the wall clock."""

    finished = False  # a live feed never runs out

    def __init__(self, *, data_url: str, stream_url: str, credentials: Credentials, feed: str = "iex", timeout: float = DEFAULT_TIMEOUT):
        self.source = AlpacaBarFeed(data_url=data_url, stream_url=stream_url, credentials=credentials, feed=feed, timeout=timeout)
        self._by_symbol: dict[str, list] = {}
        self._latest_ns = 0

    def subscribe(self, subscriptions) -> dict[int, str]:
        unserved = {}
        for subscription in subscriptions:
            instrument = subscription.instrument
            if subscription.frequency is not BarFrequency.MINUTE:
                unserved[subscription.index] = (
                    f"Alpaca streams minute bars; {subscription.label} are not delivered in a Live run: subscribe with BarFrequency.MINUTE"
                )
            elif str(instrument.asset_type) != "equity":
                unserved[subscription.index] = f"Alpaca's stock data has no {instrument.asset_type} bars: {instrument.symbol} is not delivered"
            else:
                self._by_symbol.setdefault(instrument.symbol, []).append(subscription)
        if self._by_symbol:
            self.source.start(sorted(self._by_symbol))
        return unserved

    def now_ns(self) -> int:
        self._latest_ns = max(self._latest_ns, time.time_ns())
        return self._latest_ns

    def seconds_until(self, market_ns: int) -> float:
        return max(0.0, (market_ns - self.now_ns()) / 1e9)

    def next_bars(self, timeout_seconds: float) -> list:
        bars = []
        for bar in self.source.next_bars(timeout_seconds):
            time_ns = int(bar.time.timestamp()) * 1_000_000_000 + bar.time.microsecond * 1000
            for subscription in self._by_symbol.get(bar.symbol, ()):
                trading_from_ns, close_ns = bar_times(subscription, time_ns)
                bars.append(FeedBar(subscription.index, time_ns, trading_from_ns, close_ns, bar.open, bar.high, bar.low, bar.close, bar.volume))
        bars.sort(key=lambda b: (b.close_ns, b.subscription))
        return bars

    def close(self) -> None:
        self.source.close()
