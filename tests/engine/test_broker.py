"""Simulated fills (product.md §6) through the whole engine: order types, time in force,
partial fills, sizing, commissions, rejections and the closing intents."""

from datetime import date
from decimal import Decimal

import pytest

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

MSFT = SecurityInfoFactory.build(symbol="MSFT")
DAYS = session_times(date(2020, 1, 2), date(2020, 1, 31), daily=True)  # XNYS sessions, opens 14:30 UTC
START, END = utc(2020, 1, 1), utc(2020, 2, 1)
FLAT = (100.0, 101.0, 99.0, 100.0)


def run_days(rows, script, *, core=None, on_update=None, security=MSFT, volume=1_000_000.0):
    config = {"subscribe": [Subscribe(security.symbol)], "script": script}
    if on_update:
        config["on_update"] = on_update
    bars = {(security.symbol, security.asset_type, "day"): price_bars(DAYS, rows, volume=volume)}
    return backtest(securities=[security], bars=bars, core=core, config=config, start=START, end=END)


def fills_of(result):
    return [(fill.side, fill.quantity, fill.price) for fill in result.fills]


def order(recorder, order_id=1):
    return recorder.orders()[order_id]


def test_market_order_fills_at_the_next_open_with_slippage_against_the_trader():
    rows = [FLAT, (102.0, 103.0, 101.0, 102.5), (104.0, 105.0, 103.0, 104.0)]
    script = {0: [PlaceOrder("MSFT", Intent.BUY, quantity=10)], 1: [PlaceOrder("MSFT", Intent.SELL, quantity=10)]}
    result, recorder, strategy = run_days(rows, script, core={"slippage_bps": 10})
    assert fills_of(result) == [("buy", 10, Decimal("102.102")), ("sell", 10, Decimal("103.896"))]
    assert result.fills[0].time == utc(2020, 1, 3, 14, 30)  # the open of the next session
    assert order(recorder, 1).state == OrderState.FILLED
    assert [update.state for update in strategy.updates if update.order_id == 1] == [OrderState.WORKING, OrderState.FILLED]


def test_a_day_order_whose_session_has_no_bar_expires_unfilled_at_that_close():
    result, recorder, strategy = run_days([FLAT, FLAT], {1: [PlaceOrder("MSFT", Intent.BUY, quantity=1)]})
    assert result.fills == []  # placed on the last bar: never filled on the bar it was placed on
    assert order(recorder).state == OrderState.EXPIRED
    assert order(recorder).updated_at == utc(2020, 1, 6, 21)  # Friday's order worked on Monday


@pytest.mark.parametrize(
    ("bar", "expected"),
    [
        ((100.0, 101.0, 96.0, 97.0), None),  # never below the limit
        ((98.0, 99.0, 95.0, 96.0), None),  # touches the limit without trading through it
        ((98.0, 99.0, 94.0, 95.0), Decimal("95")),  # trades through: filled at the limit
        ((93.0, 96.0, 92.0, 95.0), Decimal("93")),  # opens below: filled at the better open
    ],
)
def test_buy_limit(bar, expected):
    result, recorder, _ = run_days(
        [FLAT, bar, FLAT],
        {0: [PlaceOrder("MSFT", Intent.BUY, quantity=5, order_type=OrderType.LIMIT, limit_price=95)]},
        core={"slippage_bps": 50},  # limit fills take no slippage
    )
    assert fills_of(result) == ([("buy", 5, expected)] if expected else [])


@pytest.mark.parametrize(
    ("bar", "expected"),
    [
        ((100.0, 104.0, 99.0, 103.0), None),
        ((101.0, 106.0, 100.0, 104.0), Decimal("105")),  # crosses the stop: filled at the stop
        ((107.0, 108.0, 106.0, 107.5), Decimal("107")),  # gaps over it: filled at the worse open
    ],
)
def test_buy_stop(bar, expected):
    result, _, _ = run_days(
        [FLAT, bar, FLAT], {0: [PlaceOrder("MSFT", Intent.BUY, quantity=5, order_type=OrderType.STOP, stop_price=105)]}
    )
    assert fills_of(result) == ([("buy", 5, expected)] if expected else [])


def test_sell_stop_fills_at_the_worse_of_open_and_stop_with_slippage():
    script = {
        0: [PlaceOrder("MSFT", Intent.BUY, quantity=10)],
        1: [PlaceOrder("MSFT", Intent.SELL_TO_CLOSE, quantity=5, order_type=OrderType.STOP, stop_price=95, time_in_force=TimeInForce.GTC),
            PlaceOrder("MSFT", Intent.SELL_TO_CLOSE, quantity=5, order_type=OrderType.STOP, stop_price=90, time_in_force=TimeInForce.GTC)],
    }
    rows = [FLAT, FLAT, (97.0, 98.0, 94.0, 95.0), (88.0, 89.0, 87.0, 88.0)]
    result, _, _ = run_days(rows, script, core={"slippage_bps": 100})
    assert fills_of(result) == [
        ("buy", 10, Decimal("101")),
        ("sell", 5, Decimal("94.05")),  # the stop, 1 % worse
        ("sell", 5, Decimal("87.12")),  # gapped through 90: the open, 1 % worse
    ]


def test_stop_limit_fills_in_the_triggering_bar_only_within_the_limit_then_rests_as_a_limit():
    stop_limit = PlaceOrder("MSFT", Intent.BUY, quantity=3, order_type=OrderType.STOP_LIMIT, stop_price=105, limit_price=106,
                            time_in_force=TimeInForce.GTC)
    # Triggered inside the bar at 105, within the limit: filled at 105.
    result, _, _ = run_days([FLAT, (101.0, 107.0, 100.0, 106.0), FLAT], {0: [stop_limit]})
    assert fills_of(result) == [("buy", 3, Decimal("105"))]
    # Gaps to 108, above the limit: triggered but not filled; the next bar trades down through 106.
    rows = [FLAT, (108.0, 109.0, 107.0, 108.0), (107.0, 107.5, 105.5, 106.0), FLAT]
    result, recorder, _ = run_days(rows, {0: [stop_limit]})
    assert fills_of(result) == [("buy", 3, Decimal("106"))]
    assert result.fills[0].time == utc(2020, 1, 6, 21)  # inside the third bar: stamped at its close


def test_day_order_expires_at_the_close_of_the_session_it_works_in_and_gtc_does_not():
    limit = dict(quantity=1, order_type=OrderType.LIMIT, limit_price=90)
    script = {0: [PlaceOrder("MSFT", Intent.BUY, **limit, tag="day"),
                  PlaceOrder("MSFT", Intent.BUY, **limit, time_in_force=TimeInForce.GTC, tag="gtc")]}
    rows = [FLAT, FLAT, FLAT, (95.0, 96.0, 89.0, 90.0)]
    result, recorder, strategy = run_days(rows, script)
    day, gtc = order(recorder, 1), order(recorder, 2)
    assert day.state == OrderState.EXPIRED
    assert day.updated_at == utc(2020, 1, 3, 21)  # the close of the session after the one it was placed in
    expired = [u for u in strategy.updates if u.state == OrderState.EXPIRED]
    assert [(u.tag, u.time) for u in expired] == [("day", utc(2020, 1, 3, 21))]
    assert gtc.state == OrderState.FILLED and gtc.average_fill_price == Decimal("90")


def test_an_order_placed_at_the_last_minute_bar_works_in_the_next_session_only():
    minutes = session_times(date(2020, 1, 2), date(2020, 1, 3))  # 390 bars a session
    rows = [FLAT] * len(minutes)
    rows[390] = (111.0, 112.0, 110.0, 111.0)  # the first bar of the next session
    config = {"subscribe": [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE)],
              "script": {389: [PlaceOrder("MSFT", Intent.BUY, quantity=1)]}}
    result, recorder, strategy = backtest(
        securities=[MSFT], bars={("MSFT", "equity", "minute"): price_bars(minutes, rows)}, config=config, start=START, end=END
    )
    assert strategy.bars[389][1] == utc(2020, 1, 2, 21)  # placed at the session close
    assert fills_of(result) == [("buy", 1, Decimal("111"))]
    assert result.fills[0].time == utc(2020, 1, 3, 14, 30)


def test_partial_fills_under_volume_participation_never_exceed_the_order():
    rows = [FLAT] * 6
    result, recorder, strategy = run_days(
        rows, {0: [PlaceOrder("MSFT", Intent.BUY, quantity=25, time_in_force=TimeInForce.GTC)]},
        core={"max_volume_participation": "0.1"}, volume=100.0,
    )
    assert [fill.quantity for fill in result.fills] == [10, 10, 5]
    states = [u.state for u in strategy.updates]
    assert states == [OrderState.WORKING, OrderState.PARTIALLY_FILLED, OrderState.PARTIALLY_FILLED, OrderState.FILLED]
    assert [u.last_fill_quantity for u in strategy.updates[1:]] == [10, 10, 5]
    assert order(recorder).filled_quantity == 25


def test_a_partly_filled_day_order_expires_with_what_it_filled():
    result, recorder, _ = run_days(
        [FLAT] * 4, {0: [PlaceOrder("MSFT", Intent.BUY, quantity=25)]}, core={"max_volume_participation": "0.1"}, volume=100.0
    )
    assert order(recorder).state == OrderState.EXPIRED
    assert order(recorder).filled_quantity == 10


def test_nothing_fills_after_a_cancel():
    limit = PlaceOrder("MSFT", Intent.BUY, quantity=1, order_type=OrderType.LIMIT, limit_price=95, time_in_force=TimeInForce.GTC)
    rows = [FLAT, FLAT, (94.0, 95.0, 93.0, 94.0)]
    result, recorder, strategy = run_days(rows, {0: [limit], 1: [CancelOrder(1)]})
    assert result.fills == []
    assert order(recorder).state == OrderState.CANCELLED
    assert order(recorder).reject_reason == "cancelled by the strategy"


def test_notional_order_buys_the_largest_whole_quantity_that_fits_with_commission():
    # 10,000 at 101: 99 shares cost 9,999; with a 5.00 minimum commission only 98 fit (9,898 + 5).
    result, _, _ = run_days([FLAT, (101.0, 102.0, 100.0, 101.0), FLAT], {0: [PlaceOrder("MSFT", Intent.BUY, notional=10_000)]},
                            core={"commission": {"per_share": "0.01", "minimum": "5"}})
    [fill] = result.fills
    assert (fill.quantity, fill.price, fill.commission) == (98, Decimal("101"), Decimal("5"))
    # Fractionable: six decimals, bps commission included.
    fractional = SecurityInfoFactory.build(symbol="FRAC", fractionable=True)
    result, _, _ = run_days([FLAT, FLAT, FLAT], {0: [PlaceOrder("FRAC", Intent.BUY, notional=1000)]},
                            core={"commission": {"bps": "10"}}, security=fractional)
    [fill] = result.fills
    assert fill.quantity == Decimal("9.990009")  # 1,000 / (100 × 1.001), down to 6 places
    assert fill.quantity * fill.price + fill.commission <= 1000
    assert (fill.quantity + Decimal("0.000001")) * fill.price * Decimal("1.001") > 1000


def test_per_share_commission_minimum_is_charged_once_per_order():
    result, recorder, _ = run_days(
        [FLAT] * 5, {0: [PlaceOrder("MSFT", Intent.BUY, quantity=300, time_in_force=TimeInForce.GTC)]},
        core={"commission": {"per_share": "0.005", "minimum": "1.00"}, "max_volume_participation": "0.5"}, volume=200.0,
    )
    assert [fill.quantity for fill in result.fills] == [100, 100, 100]
    # 300 × 0.005 = 1.50 in total: the first fill pays the minimum, the others top it up.
    assert [fill.commission for fill in result.fills] == [Decimal("1.00"), Decimal("0"), Decimal("0.50")]
    assert order(recorder).commission == Decimal("1.50")


def rejection(recorder, order_id=1):
    record = recorder.orders()[order_id]
    assert record.state == OrderState.REJECTED
    return record.reject_reason


def test_rejected_for_insufficient_buying_power_with_the_leverage_limit():
    # 1,000 shares at 100 is all of the 100,000 cash: allowed; one more share is not.
    result, recorder, strategy = run_days([FLAT] * 3, {0: [PlaceOrder("MSFT", Intent.BUY, quantity=1001)]})
    assert rejection(recorder).startswith("insufficient buying power")
    assert strategy.updates[-1].state == OrderState.REJECTED and strategy.updates[-1].reason.startswith("insufficient")
    result, recorder, _ = run_days([FLAT] * 3, {0: [PlaceOrder("MSFT", Intent.BUY, quantity=2000)]}, core={"max_leverage": 2})
    assert fills_of(result) == [("buy", 2000, Decimal("100"))]
    assert result.cash == Decimal("-100000")


def test_rejected_short_unless_allowed():
    sell = {0: [PlaceOrder("MSFT", Intent.SELL, quantity=10)]}
    _, recorder, _ = run_days([FLAT] * 3, sell)
    assert rejection(recorder).startswith("short not allowed")
    issues = recorder.issues()
    assert issues["order_rejected"][0] == 1
    result, _, strategy = run_days([FLAT, FLAT, (90.0, 91.0, 89.0, 90.0)], sell, core={"allow_short": True})
    assert fills_of(result) == [("sell", 10, Decimal("100"))]
    position = strategy.ctx.position("MSFT")
    assert position.quantity == -10
    assert position.market_value == Decimal("-900")  # marked at the last close
    assert result.portfolio_value == Decimal("100100")  # 101,000 cash − 900


@pytest.mark.parametrize(("field", "value"), [("quantity", 0), ("quantity", -5), ("notional", 0)])
def test_rejected_when_the_quantity_is_not_positive(field, value):
    _, recorder, _ = run_days([FLAT] * 3, {0: [PlaceOrder("MSFT", Intent.BUY, **{field: value})]})
    assert rejection(recorder).startswith("quantity not positive")


def test_rejected_for_a_symbol_not_subscribed_and_a_fraction_of_a_whole_share():
    _, recorder, _ = run_days([FLAT] * 3, {0: [PlaceOrder("AAPL", Intent.BUY, quantity=1), PlaceOrder("MSFT", Intent.BUY, quantity=1.5)]})
    assert rejection(recorder, 1).startswith("unknown symbol: AAPL (equity) is not subscribed")
    assert rejection(recorder, 2).startswith("fractional quantity not allowed")


def test_risk_limits_reject_with_their_own_issue_code():
    script = {0: [PlaceOrder("MSFT", Intent.BUY, quantity=60), PlaceOrder("MSFT", Intent.BUY, quantity=30)]}
    _, recorder, _ = run_days([FLAT] * 3, script, core={"max_order_value": 5000})
    assert rejection(recorder, 1).startswith("risk limit: order value 6,000.00 is above core.max_order_value 5,000.00")
    assert recorder.orders()[2].state == OrderState.FILLED
    _, recorder, _ = run_days([FLAT] * 3, script, core={"max_position_value": 7000})
    assert recorder.orders()[1].state == OrderState.FILLED
    assert rejection(recorder, 2).startswith("risk limit: the MSFT position would be worth 9,000.00")
    assert "risk_limit" in recorder.issues() and "order_rejected" not in recorder.issues()


def test_rejected_when_no_session_is_left_and_repeats_count_on_one_issue():
    script = {2: [PlaceOrder("MSFT", Intent.BUY, quantity=1), PlaceOrder("MSFT", Intent.BUY, quantity=2)]}
    config = {"subscribe": [Subscribe("MSFT")], "script": script}
    bars = {("MSFT", "equity", "day"): price_bars(DAYS, [FLAT] * 3)}
    # The backtest ends before the session after the third bar opens.
    _, recorder, _ = backtest(securities=[MSFT], bars=bars, config=config, start=START, end=utc(2020, 1, 7))
    assert rejection(recorder, 1) == "market closed: no XNYS session opens before the backtest ends"
    count, issue = recorder.issues()["order_rejected"]
    assert count == 2 and issue.severity == "warning" and issue.component == "simulation"


def test_close_flattens_either_side_and_cancels_when_flat():
    long_then_close = {0: [PlaceOrder("MSFT", Intent.BUY, quantity=7)], 1: [PlaceOrder("MSFT", Intent.CLOSE)]}
    result, _, strategy = run_days([FLAT] * 4, long_then_close)
    assert fills_of(result) == [("buy", 7, Decimal("100")), ("sell", 7, Decimal("100"))]
    short_then_close = {0: [PlaceOrder("MSFT", Intent.SELL, quantity=4)], 1: [PlaceOrder("MSFT", Intent.CLOSE)]}
    result, _, strategy = run_days([FLAT] * 4, short_then_close, core={"allow_short": True})
    assert fills_of(result) == [("sell", 4, Decimal("100")), ("buy", 4, Decimal("100"))]
    assert strategy.ctx.position("MSFT").quantity == 0
    _, recorder, _ = run_days([FLAT] * 3, {0: [PlaceOrder("MSFT", Intent.CLOSE)]})
    assert order(recorder).state == OrderState.CANCELLED
    assert order(recorder).reject_reason == "nothing to close: the position is flat"


def test_sell_to_close_and_buy_to_close_never_flip_the_position():
    script = {0: [PlaceOrder("MSFT", Intent.BUY, quantity=10)], 1: [PlaceOrder("MSFT", Intent.SELL_TO_CLOSE, quantity=25)]}
    result, recorder, strategy = run_days([FLAT] * 4, script, core={"allow_short": True})
    assert fills_of(result)[-1] == ("sell", 10, Decimal("100"))
    assert strategy.ctx.position("MSFT").quantity == 0
    closing = order(recorder, 2)
    assert closing.state == OrderState.FILLED and closing.filled_quantity == 10
    assert "never opens the other side" in closing.reject_reason
    _, recorder, _ = run_days([FLAT] * 4, {0: [PlaceOrder("MSFT", Intent.BUY, quantity=10)],
                                          1: [PlaceOrder("MSFT", Intent.BUY_TO_CLOSE, quantity=5)]})
    assert order(recorder, 2).state == OrderState.CANCELLED
    assert order(recorder, 2).reject_reason == "nothing to close: the position is long"


def test_client_order_ids_are_deterministic_per_run():
    result, recorder, _ = run_days([FLAT] * 3, {0: [PlaceOrder("MSFT", Intent.BUY, quantity=1)]})
    assert order(recorder).client_order_id == "bt-1"
    assert result.fills[0].execution_id == "bt-1-1"
