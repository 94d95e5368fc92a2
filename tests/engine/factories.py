"""Test doubles for the engine: securities (factory-boy), bars on real session calendars, an
in-memory MarketData, a Recorder that keeps every batch, and strategy modules compiled under a
file prefix the way the loader does it."""

from __future__ import annotations

import linecache
import textwrap
from datetime import UTC, date, datetime
from decimal import Decimal
from types import ModuleType

import factory
import numpy as np

from runs.engine import CoreSettings, run_backtest
from runs.engine.records import BarArrays, RecordBatch
from runs.engine.sessions import sessions_between
from strategies.sdk.base import SecurityInfo, StrategyBase
from strategies.sdk.enums import AssetType

NS_PER_MINUTE = 60_000_000_000
PREFIX = "lookout://test@1/"


class SecurityInfoFactory(factory.Factory):
    class Meta:
        model = SecurityInfo

    symbol = factory.Sequence(lambda n: f"SYM{n}")
    asset_type = AssetType.EQUITY
    name = factory.LazyAttribute(lambda o: f"{o.symbol} Inc.")
    exchange = "XNAS"
    currency = "USD"
    tick_size = Decimal("0.01")
    multiplier = Decimal(1)
    fractionable = False


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def session_times(first: date, last: date, *, calendar: str = "XNYS", frequency_seconds: int = 60, daily: bool = False) -> np.ndarray:
    """Bar open times (ns) on the calendar's sessions from `first` to `last` inclusive: every
    `frequency_seconds` from each open to the close, or one per session (its open) if daily."""
    sessions = sessions_between(calendar, utc(first.year, first.month, first.day), utc(last.year, last.month, last.day))
    first_day = (np.datetime64(first, "D")).astype("int64")
    last_day = (np.datetime64(last, "D")).astype("int64")
    chosen = (sessions.days >= first_day) & (sessions.days <= last_day)
    opens, closes = sessions.opens[chosen], sessions.closes[chosen]
    if daily:
        return opens.copy()
    step = frequency_seconds * 1_000_000_000
    return np.concatenate([np.arange(o, c, step, dtype=np.int64) for o, c in zip(opens, closes, strict=True)])


def walk_bars(
    times: np.ndarray, *, seed: int = 1, start: float = 100.0, volatility: float = 0.002, volume: float = 10_000.0, tick: float = 0.01
) -> BarArrays:
    """A seeded random walk on the tick grid: each bar opens at the previous close."""
    rng = np.random.default_rng(seed)

    def on_grid(prices):
        return np.round(np.round(prices / tick) * tick, 8)

    closes = on_grid(start * np.exp(np.cumsum(rng.normal(0.0, volatility, len(times)))))
    opens = np.concatenate(([start], closes[:-1]))
    spread = np.abs(rng.normal(0.0, volatility, len(times))) * closes
    highs = on_grid(np.maximum(opens, closes) + spread)
    lows = on_grid(np.minimum(opens, closes) - spread)
    return BarArrays(np.asarray(times, dtype=np.int64), opens, highs, lows, closes, np.full(len(times), volume))


def price_bars(times: np.ndarray, rows: list[tuple[float, float, float, float]], volume: float = 10_000.0) -> BarArrays:
    """Bars with the given (open, high, low, close) rows."""
    data = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return BarArrays(np.asarray(times[: len(data)], dtype=np.int64), data[:, 0], data[:, 1], data[:, 2], data[:, 3], np.full(len(data), volume))


class MemoryMarketData:
    """MarketData over dicts: securities by (symbol, asset type), bars by (symbol, asset type, frequency)."""

    def __init__(self, securities=(), bars=None):
        self.securities = {(s.symbol, AssetType(s.asset_type)): s for s in securities}
        self.bar_sets = {}
        for (symbol, asset_type, frequency), arrays in (bars or {}).items():
            self.bar_sets[(symbol, AssetType(asset_type), str(frequency))] = arrays
        self.requests = []

    def security(self, symbol, asset_type):
        return self.securities.get((symbol, AssetType(asset_type)))

    def bars(self, symbol, asset_type, frequency, start, end):
        self.requests.append((symbol, AssetType(asset_type), str(frequency), start, end))
        found = self.bar_sets.get((symbol, AssetType(asset_type), str(frequency)))
        if found is None:
            empty = np.empty(0)
            return BarArrays(np.empty(0, dtype=np.int64), empty, empty, empty, empty, empty)
        return found


class ListRecorder:
    """Keeps every batch; merged views of what a database would hold at the end."""

    def __init__(self):
        self.batches: list[RecordBatch] = []

    def record(self, batch: RecordBatch) -> None:
        self.batches.append(batch)

    def all(self, name: str) -> list:
        return [item for batch in self.batches for item in getattr(batch, name)]

    def orders(self) -> dict:
        latest = {}
        for record in self.all("orders"):
            latest[record.order_id] = record
        return latest

    def issues(self) -> dict:
        """code -> total count (summed over batches), plus the latest record per code."""
        totals = {}
        for issue in self.all("issues"):
            count, _ = totals.get(issue.code, (0, None))
            totals[issue.code] = (count + issue.count, issue)
        return totals


def compile_strategy(source: str, *, prefix: str = PREFIX) -> type:
    """Compile strategy source as `<prefix>strategy.py` (the way the loader names a bundle's
    files, lines registered for tracebacks) and return its Strategy class."""
    text = textwrap.dedent(source)
    filename = prefix + "strategy.py"
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    module = ModuleType("strategy")
    module.__file__ = filename
    exec(compile(text, filename, "exec"), module.__dict__)
    return module.Strategy


class Scripted(StrategyBase):
    """A strategy driven by its config, for engine tests.

    config: "subscribe" (actions returned by on_start), "on_start" (more actions for on_start),
    "script" {bar number: actions, or a function(strategy) returning them}, "on_update"
    function(strategy, event) -> actions, "on_timer" function(strategy, event) -> actions.
    It keeps every event it sees (bars, updates, timers) and appends itself to
    config["instances"] so a test can inspect it.
    """

    def on_start(self, now):
        self.started_at = now
        self.bars, self.updates, self.timers, self.stopped_at = [], [], [], None
        self.config.setdefault("instances", []).append(self)
        return [*self.config.get("subscribe", []), *self.config.get("on_start", [])]

    def on_bar(self, event):
        self.bars.append((event, self.ctx.now))
        step = self.config.get("script", {}).get(len(self.bars) - 1)
        return step(self) if callable(step) else step

    def on_order_update(self, event):
        self.updates.append(event)
        react = self.config.get("on_update")
        return react(self, event) if react else None

    def on_timer(self, event):
        self.timers.append((event, self.ctx.now))
        react = self.config.get("on_timer")
        return react(self, event) if react else None

    def on_stop(self, now):
        self.stopped_at = now
        return None


def backtest(strategy_class=Scripted, *, securities=(), bars=None, core=None, config=None, start, end, **options):
    """Run the engine on in-memory data; returns (result, recorder, strategy instance or None)."""
    config = {} if config is None else config
    recorder = ListRecorder()
    options.setdefault("strategy_file_prefix", PREFIX)
    result = run_backtest(
        strategy_class=strategy_class,
        strategy_config=config,
        core=CoreSettings.from_config(core or {}),
        market_data=MemoryMarketData(securities, bars),
        start=start,
        end=end,
        recorder=recorder,
        **options,
    )
    instances = config.get("instances") or [None]
    return result, recorder, instances[-1]
