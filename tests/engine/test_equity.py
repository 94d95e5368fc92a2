"""A backtest's equity curve is computed in bulk (runs/engine/equity.py) from the portfolio states
noted when they change: its points must be the ones a per-bar valuation gives — Portfolio.value()
at every group end, as the strategy sees it in ctx.portfolio_value — whatever the instruments,
and across batches and a kill."""

from datetime import date
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from runs.engine import dispatch
from runs.engine.equity import ReplayEquity
from runs.engine.feed import Instrument, MergedFeed, Subscription, from_ns, to_ns
from runs.engine.ledger import Portfolio
from runs.engine.realtime import run_realtime
from runs.engine.records import BarArrays
from runs.engine.replay import ReplayFeed
from strategies.sdk import AssetType, BarFrequency, DepositCash, Intent, PlaceOrder, StrategyBase, Subscribe
from tests.engine.factories import (
    NS_PER_MINUTE,
    PREFIX,
    ListRecorder,
    MemoryMarketData,
    SecurityInfoFactory,
    backtest,
    session_times,
    utc,
    walk_bars,
)
from tests.engine.test_replay import FakeClock, last_bar_time_of

MSFT = SecurityInfoFactory.build(symbol="MSFT")
AAPL = SecurityInfoFactory.build(symbol="AAPL", fractionable=True)
ES = SecurityInfoFactory.build(symbol="ES", asset_type=AssetType.FUTURE, multiplier=Decimal(50), tick_size=Decimal("0.25"))
MINUTES = session_times(date(2020, 1, 2), date(2020, 1, 2))[:150]
HOURS = session_times(date(2020, 1, 2), date(2020, 1, 2), frequency_seconds=3600)[:2]
START, END = utc(2020, 1, 2), utc(2020, 1, 3)
BARS = {
    ("MSFT", "equity", "minute"): walk_bars(MINUTES, seed=1, start=150.0),
    ("MSFT", "equity", "hour"): walk_bars(HOURS, seed=2, start=150.0),
    ("AAPL", "equity", "minute"): walk_bars(MINUTES, seed=3, start=75.0),
    ("ES", "future", "minute"): walk_bars(MINUTES[20:], seed=4, start=320.0, volatility=0.01, tick=0.25),  # from the 21st minute on
}
# (minute of the bar, symbol) -> actions: every kind of holding, a deposit, flat spells.
PLAN = {
    (0, "MSFT"): [PlaceOrder("MSFT", Intent.BUY, quantity=10)],
    (1, "MSFT"): [PlaceOrder("ES", Intent.BUY, quantity=1, asset_type=AssetType.FUTURE)],  # fills on ES's first bar
    (2, "AAPL"): [PlaceOrder("AAPL", Intent.BUY, quantity=Decimal("2.5"))],
    (5, "MSFT"): [DepositCash(Decimal("1234.56"))],
    (25, "ES"): [PlaceOrder("ES", Intent.BUY, quantity=2)],  # average over three contracts: a repeating decimal
    (40, "AAPL"): [PlaceOrder("AAPL", Intent.SELL, quantity=Decimal("1.25"))],
    (50, "MSFT"): [PlaceOrder("MSFT", Intent.SELL, quantity=10)],
    (60, "ES"): [PlaceOrder("ES", Intent.SELL, quantity=3)],
    (70, "AAPL"): [PlaceOrder("AAPL", Intent.CLOSE)],
    (90, "MSFT"): [PlaceOrder("MSFT", Intent.BUY, quantity=5)],
    (120, "MSFT"): [DepositCash(Decimal("100.01"))],
}
CORE = {"commission": {"bps": "1.5"}, "max_leverage": 4}


class Trader(StrategyBase):
    """Follows PLAN and notes, at every bar, what the equity point of its time must hold if the
    bar is the last one of that time: ctx.portfolio_value and ctx.cash after its own deposits,
    and whether a position is open."""

    def on_start(self, now):
        self.seen = {}
        self.config["instances"].append(self)
        return [
            Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE),
            Subscribe("MSFT", AssetType.EQUITY, BarFrequency.HOUR),
            Subscribe("AAPL", AssetType.EQUITY, BarFrequency.MINUTE),
            Subscribe("ES", AssetType.FUTURE, BarFrequency.MINUTE),
        ]

    def on_bar(self, event):
        minute = (event.time_ns - int(MINUTES[0])) // NS_PER_MINUTE
        actions = PLAN.get((minute, event.symbol), []) if event.frequency is BarFrequency.MINUTE else []
        deposited = sum((action.amount for action in actions if isinstance(action, DepositCash)), Decimal(0))
        ctx = self.ctx
        held = any(ctx.position(symbol).quantity != 0 for symbol in ("MSFT", "AAPL", "ES"))
        self.seen[ctx.now] = (ctx.portfolio_value + deposited, ctx.cash + deposited, held)
        return actions


def run_trader(**options):
    config = {"instances": []}
    result, recorder, trader = backtest(
        Trader, securities=[MSFT, AAPL, ES], bars=BARS, core=CORE, config=config, start=START, end=END,
        flush_interval_seconds=0, **options,
    )
    return result, recorder, trader


def expected_exposure(points, held_at) -> float:
    """The share of the curve's span between two consecutive points that both held a position."""
    exposed = sum(
        to_ns(later.time) - to_ns(earlier.time)
        for earlier, later in zip(points, points[1:], strict=False)
        if held_at(earlier) and held_at(later)
    )
    return exposed / (to_ns(points[-1].time) - to_ns(points[0].time))


def test_the_curve_is_the_portfolio_value_at_every_group_end_over_equities_a_future_and_a_deposit():
    result, recorder, trader = run_trader()
    assert result.status == "complete" and len(result.fills) == 9
    assert len(recorder.batches) > 3  # points handed out over several batches, positions open across them
    points = recorder.all("equity")
    assert points[0].time == START and points[0].portfolio_value == 100_000.0
    assert [p.time for p in points[1:]] == sorted(trader.seen)  # one point per close time
    assert [p.portfolio_value for p in points[1:]] == [float(trader.seen[p.time][0]) for p in points[1:]]
    assert [p.cash for p in points[1:]] == [float(trader.seen[p.time][1]) for p in points[1:]]
    assert list(result.equity_values) == [p.portfolio_value for p in points]
    assert result.equity_values[-1] == float(result.portfolio_value)
    # The futures position was valued by its unrealized P&L on a repeating average price.
    es_buys = [fill.price for fill in result.fills if fill.symbol == "ES" and fill.side == "buy"]
    assert (Fraction(es_buys[0] + 2 * es_buys[1]) / 3).denominator % 3 == 0
    held = {time: seen[2] for time, seen in trader.seen.items()}
    assert result.exposure_fraction == expected_exposure(points, lambda p: held.get(p.time, False))
    assert 0 < result.exposure_fraction < 1


def test_the_bulk_curve_equals_the_real_time_drivers_per_bar_curve():
    result, _, _ = run_trader()
    clock = FakeClock()
    market_data = MemoryMarketData([MSFT, AAPL, ES], BARS)
    feed = ReplayFeed(market_data=market_data, last_bar_time=last_bar_time_of(market_data), start=from_ns(int(MINUTES[0])),
                      speed=600.0, clock=clock, sleep=clock.sleep)
    per_bar = run_realtime(
        strategy_class=Trader, strategy_config={"instances": []}, core=dispatch.CoreSettings.from_config(CORE), feed=feed,
        market_data=market_data, recorder=ListRecorder(), should_stop=lambda: False, clock=clock, strategy_file_prefix=PREFIX, client_order_prefix="bt",
    )
    assert per_bar.fills == result.fills
    # The real-time run starts at the first bar's open (its first point), the backtest at START.
    assert per_bar.equity_times[1:].tolist() == result.equity_times[1:].tolist()
    assert per_bar.equity_values[1:].tolist() == result.equity_values[1:].tolist()


def test_a_kill_keeps_the_curve_so_far_the_same_as_the_full_runs(monkeypatch):
    full, _, _ = run_trader()
    monkeypatch.setattr(dispatch, "STOP_POLL_SECONDS", 0.0)  # poll at every wall-clock check
    instances = []

    def should_stop():
        return bool(instances) and len(instances[-1].seen) >= 80

    config = {"instances": instances}
    result, recorder, trader = backtest(
        Trader, securities=[MSFT, AAPL, ES], bars=BARS, core=CORE, config=config, start=START, end=END,
        flush_interval_seconds=0, should_stop=should_stop,
    )
    assert result.status == "stopped" and recorder.batches[-1].final
    points = recorder.all("equity")
    assert 80 < len(points) < len(full.equity_times)
    # A point for every close time whose bars were all processed (the kill may land inside a group).
    assert [p.time for p in points[1:]] == sorted(trader.seen)[: len(points) - 1]
    assert len(trader.seen) - (len(points) - 1) in (0, 1)
    assert result.equity_times.tolist() == full.equity_times[: len(points)].tolist()
    assert result.equity_values.tolist() == full.equity_values[: len(points)].tolist()
    held = {time: seen[2] for time, seen in trader.seen.items()}
    assert result.exposure_fraction == expected_exposure(points, lambda p: held.get(p.time, False)) > 0


# -- ReplayEquity on its own, against Portfolio.value() walked bar by bar ------------------------


def make_feed(series: dict) -> tuple[MergedFeed, list[Subscription]]:
    """series: {security: (times ns, closes)} as minute bars (emitted a minute after they open)."""
    subscriptions = []
    for index, (security, (times, closes)) in enumerate(series.items()):
        subscription = Subscription(index, Instrument(security), BarFrequency.MINUTE)
        closes = np.asarray(closes, dtype=np.float64)
        subscription.bars = BarArrays(np.asarray(times, dtype=np.int64), closes, closes, closes, closes, np.ones(len(closes)))
        subscription.bar_open_ns = subscription.bars.times
        subscription.close_ns = subscription.bars.times + NS_PER_MINUTE
        subscriptions.append(subscription)
    return MergedFeed(subscriptions), subscriptions


def walk(feed, subscriptions, portfolio, changes: dict, settle_at: list[int]):
    """The replay loop's bookkeeping without strategy: closes per bar, `changes[index](portfolio)`
    after bar `index`, states noted at group ends. Returns (expected points, bulk points)."""
    equity = ReplayEquity(feed, subscriptions, portfolio)
    equity.note(-1)
    noted = portfolio.revision
    expected, bulk = [], []
    for index in range(len(feed)):
        sub = subscriptions[feed.single_index if feed.subscription_index is None else int(feed.subscription_index[index])]
        sub.instrument.last_close = float(feed.close[index])
        if index in changes:
            changes[index](portfolio)
        if feed.group_end[index]:
            value = portfolio.value()
            expected.append((int(feed.emit_ns[index]), float(value), portfolio.cash_float, bool(portfolio.open_positions)))
            if portfolio.revision != noted:
                noted = portfolio.revision
                equity.note(index)
        if index + 1 in settle_at:
            bulk.extend(zip(*(column.tolist() for column in equity.points(index + 1)), strict=True))
    bulk.extend(zip(*(column.tolist() for column in equity.points(len(feed))), strict=True))
    return expected, bulk


def buy(instrument, quantity, price, time=START):
    def change(portfolio):
        portfolio.apply_fill(instrument, Decimal(quantity), Decimal(price), Decimal("0.37"), time, 1)
    return change


def deposit(amount):
    def change(portfolio):
        portfolio.deposit(Decimal(amount), time=START, description="test")
    return change


def test_positions_opened_before_their_instruments_first_bar_are_valued_at_their_average_price():
    times = MINUTES[:40]
    a, b, f = (SecurityInfoFactory.build(symbol="A"), SecurityInfoFactory.build(symbol="B", fractionable=True),
               SecurityInfoFactory.build(symbol="F", asset_type=AssetType.FUTURE, multiplier=Decimal("12.5")))
    feed, subscriptions = make_feed({
        a: (times, np.linspace(10, 20, 40)),
        b: (times[15:], np.linspace(30.123, 31.5, 25)),  # its bars start later
        f: (times[25:], np.linspace(4000, 4010.25, 15)),
    })
    a_, b_, f_ = (s.instrument for s in subscriptions)
    portfolio = Portfolio()
    portfolio.deposit(Decimal(50_000), time=START, description="start")
    changes = {
        0: buy(b_, "3.333", "29.99"),  # before B's first bar: worth 3.333 × 29.99 until then
        3: buy(f_, "2", "4001.3"),  # before F's first bar: no unrealized P&L until then
        5: buy(f_, "1", "3999.9"),  # average 4000.8333...
        8: buy(a_, "7", "10.5"),
        20: deposit("0.01"),
        30: buy(b_, "-3.333", "31"),
    }
    expected, bulk = walk(feed, subscriptions, portfolio, changes, settle_at=[4, 16, 17, 33])
    assert bulk == expected
    assert expected[0][1] == 49_999.63  # B at its cost: the commission is all that is lost
    assert expected[4][1] == 49_999.26  # and F, without bars yet, at no unrealized P&L


def test_holdings_too_large_for_int64_are_valued_in_python_integers():
    times = MINUTES[:12]
    big, small = SecurityInfoFactory.build(symbol="BIG"), SecurityInfoFactory.build(symbol="SMALL", fractionable=True)
    feed, subscriptions = make_feed({big: (times, np.linspace(90_000.5, 99_999.75, 12)), small: (times, np.linspace(1.01, 1.5, 12))})
    big_, small_ = (s.instrument for s in subscriptions)
    portfolio = Portfolio()
    portfolio.deposit(Decimal(10) ** 8, time=START, description="start")  # 1e16 units: past float64's exact integers
    changes = {
        1: buy(small_, "0.12345678", "1.02"),
        2: buy(big_, "100000", "90000"),  # int64 still
        5: buy(big_, "-100000", "95000"),
        7: buy(big_, "100000000000", "95000"),  # 9.5e15 of stock: 9.5e23 units, beyond int64
        10: buy(big_, "-100000000000", "99000"),
    }
    expected, bulk = walk(feed, subscriptions, portfolio, changes, settle_at=[4, 8])
    assert bulk == expected
    assert min(abs(value) for _, value, _, _ in expected) > 2**53 / 1e8  # floats from units past 2**53
    assert max(abs(value) for _, value, _, _ in expected) > 2**63 / 1e8  # units past int64


@pytest.mark.parametrize("settle_at", [[], [1, 2, 3], list(range(1, 60, 7))])
def test_points_do_not_depend_on_where_the_batches_cut(settle_at):
    times = MINUTES[:60]
    x, y = SecurityInfoFactory.build(symbol="X"), SecurityInfoFactory.build(symbol="Y", multiplier=Decimal("0.1"))
    feed, subscriptions = make_feed({x: (times, np.round(np.linspace(5, 9, 60), 2)), y: (times[::2], np.round(np.linspace(50, 40, 30), 2))})
    x_, y_ = (s.instrument for s in subscriptions)
    portfolio = Portfolio()
    portfolio.deposit(Decimal(1000), time=START, description="start")
    changes = {0: buy(x_, "10", "5"), 9: buy(y_, "33", "49.5"), 20: buy(x_, "-10", "6"), 35: buy(x_, "3", "7.01"), 50: deposit("10")}
    expected, bulk = walk(feed, subscriptions, portfolio, changes, settle_at=settle_at)
    assert bulk == expected


def test_values_past_2_to_the_53_units_are_the_nearest_floats():
    # 933955842044160735 units: made a float before dividing by 1e8, it would be one ulp off.
    times = MINUTES[:3]
    x = SecurityInfoFactory.build(symbol="X")
    feed, subscriptions = make_feed({x: (times, [10.0, 10.0, 10.0])})
    portfolio = Portfolio()
    portfolio.deposit(Decimal("9339558420.81160735"), time=START, description="start")
    expected, bulk = walk(feed, subscriptions, portfolio, {0: buy(subscriptions[0].instrument, "1", "10")}, settle_at=[])
    assert bulk == expected
    assert expected[-1][1] == 933955842044160735 / 100_000_000 != float(933955842044160735) / 1e8


def test_a_value_exactly_half_a_unit_off_rounds_half_to_even():
    # Average 100.000000005 on one contract: every mark is x.xxxxxxxx5, rounded to the even unit
    # as the ledger's money() does, up or down with the close.
    times = MINUTES[:20]
    future = SecurityInfoFactory.build(symbol="G", asset_type=AssetType.FUTURE, multiplier=Decimal(1))
    feed, subscriptions = make_feed({future: (times, np.round(100.001 + np.arange(20) * 0.00000001, 8))})  # odd and even units
    g = subscriptions[0].instrument
    portfolio = Portfolio()
    portfolio.deposit(Decimal(1000), time=START, description="start")
    changes = {0: buy(g, "1", "100.00000001"), 1: buy(g, "1", "100"), 2: buy(g, "-1", "100.5")}
    expected, bulk = walk(feed, subscriptions, portfolio, changes, settle_at=[5])
    assert g.position.average_price == Decimal("100.000000005")
    assert bulk == expected
