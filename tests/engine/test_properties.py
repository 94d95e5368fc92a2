"""Ledger invariants under random strategies (Hypothesis): whatever a strategy does, the books
balance, fills respect their orders, a cancelled order stays unfilled, and runs repeat exactly."""

from collections import defaultdict
from datetime import date
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies.sdk import (
    AssetType,
    BarFrequency,
    CancelOrder,
    Intent,
    OrderState,
    OrderType,
    PlaceOrder,
    Subscribe,
    TimeInForce,
)
from tests.engine.factories import SecurityInfoFactory, backtest, price_bars, session_times, utc

SYMBOLS = ("AAA", "BBB")
SECURITIES = [SecurityInfoFactory.build(symbol="AAA"), SecurityInfoFactory.build(symbol="BBB", fractionable=True)]
MINUTES = session_times(date(2020, 1, 2), date(2020, 1, 3))[385:425]  # across a session close


@st.composite
def bar_rows(draw, count):
    rows, price = [], draw(st.integers(2000, 20000)) / 100
    for _ in range(count):
        open_ = price
        close = max(1.0, round(open_ + draw(st.integers(-300, 300)) / 100, 2))
        high = round(max(open_, close) + draw(st.integers(0, 200)) / 100, 2)
        low = max(0.5, round(min(open_, close) - draw(st.integers(0, 200)) / 100, 2))
        rows.append((open_, high, low, close))
        price = close
    return rows


order_actions = st.one_of(
    st.builds(
        lambda symbol, intent, quantity, tif: PlaceOrder(symbol, intent, quantity=quantity, time_in_force=tif),
        st.sampled_from(SYMBOLS), st.sampled_from([Intent.BUY, Intent.SELL, Intent.SELL_TO_CLOSE, Intent.BUY_TO_CLOSE]),
        st.integers(-2, 400), st.sampled_from(list(TimeInForce)),
    ),
    st.builds(
        lambda symbol, notional: PlaceOrder(symbol, Intent.BUY, notional=notional),
        st.sampled_from(SYMBOLS), st.integers(0, 60000),
    ),
    st.builds(lambda symbol: PlaceOrder(symbol, Intent.CLOSE), st.sampled_from(SYMBOLS)),
    st.builds(
        lambda symbol, intent, order_type, offset, quantity: PlaceOrder(
            symbol, intent, quantity=quantity, order_type=order_type, time_in_force=TimeInForce.GTC,
            limit_price=100 + offset if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
            stop_price=100 - offset if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
        ),
        st.sampled_from(SYMBOLS), st.sampled_from([Intent.BUY, Intent.SELL]),
        st.sampled_from([OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT]), st.integers(-80, 80), st.integers(1, 300),
    ),
    st.builds(CancelOrder, st.integers(1, 30)),
)

cores = st.fixed_dictionaries({
    "allow_short": st.booleans(),
    "slippage_bps": st.sampled_from([0, 5, 25]),
    "commission": st.sampled_from([None, {"bps": "2"}, {"per_share": "0.01", "minimum": "1"}]),
    "max_volume_participation": st.sampled_from([None, "0.5", "0.05"]),
    "max_leverage": st.sampled_from([1, 2]),
})


@st.composite
def scenarios(draw):
    rows = {symbol: draw(bar_rows(len(MINUTES))) for symbol in SYMBOLS}
    script = draw(st.dictionaries(st.integers(0, len(MINUTES) * 2 - 1), st.lists(order_actions, min_size=1, max_size=3), max_size=25))
    return rows, script, draw(cores)


def run(rows, script, core):
    """Runs the scenario; on every bar the strategy notes (now, portfolio value, cash + Σ market values)."""
    checks = []

    def check_then(actions):
        def step(strategy):
            ctx = strategy.ctx
            market_values = sum((ctx.position(symbol).market_value for symbol in SYMBOLS), Decimal(0))
            checks.append((ctx.now, ctx.portfolio_value, ctx.cash + market_values))
            return actions

        return step

    config = {
        "subscribe": [Subscribe(symbol, AssetType.EQUITY, BarFrequency.MINUTE) for symbol in SYMBOLS],
        "script": {index: check_then(script.get(index)) for index in range(len(MINUTES) * len(SYMBOLS))},
    }
    bars = {(symbol, "equity", "minute"): price_bars(MINUTES, rows[symbol], volume=2000.0) for symbol in SYMBOLS}
    result, recorder, _ = backtest(securities=SECURITIES, bars=bars, core=core, config=config,
                                   start=utc(2020, 1, 2), end=utc(2020, 1, 4))
    return result, recorder, checks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_books_balance_whatever_the_strategy_does(scenario):
    rows, script, core = scenario
    result, recorder, checks = run(rows, script, core)
    assert result.status == "complete"

    # Cash is the sum of the ledger, entry by entry.
    total = Decimal(0)
    for entry in recorder.all("ledger"):
        total += entry.amount
        assert entry.balance == total
    assert total == result.cash

    # Portfolio value = cash + Σ market values, as the strategy sees it on every bar, and each
    # equity point holds the value after the last bar of its time (the curve's floats are the
    # nearest to the ledger's exact figures).
    assert all(value == parts for _, value, parts in checks)
    last_seen = {now: value for now, value, _ in checks}
    points = recorder.all("equity")
    assert [point.time for point in points[1:]] == sorted(last_seen)
    assert all(point.portfolio_value == float(last_seen[point.time]) for point in points[1:])

    # Fills never exceed their order; nothing fills after a cancel.
    orders = recorder.orders()
    filled = defaultdict(Decimal)
    for fill in result.fills:
        filled[fill.order_id] += fill.quantity
        record = orders[fill.order_id]
        if record.state == OrderState.CANCELLED:
            assert fill.time <= record.updated_at
    for order_id, record in orders.items():
        assert filled[order_id] == record.filled_quantity
        if record.quantity is not None:
            assert record.filled_quantity <= record.quantity
    # Without core.allow_short no position ever goes below zero.
    held = defaultdict(Decimal)
    for fill in result.fills:
        held[fill.symbol] += fill.quantity if fill.side == "buy" else -fill.quantity
        assert core["allow_short"] or held[fill.symbol] >= 0

    # The same inputs give the same results.
    again, recorder_again, _ = run(rows, script, core)
    assert (again.cash, again.portfolio_value, again.fills) == (result.cash, result.portfolio_value, result.fills)
    assert recorder_again.all("ledger") == recorder.all("ledger")
    assert recorder_again.all("equity") == recorder.all("equity")
