"""Cash, positions and the ledger: equities move cash by notional, futures by realized P&L."""

from datetime import date
from decimal import Decimal

from strategies.sdk import AssetType, BarFrequency, DepositCash, Intent, PlaceOrder, Subscribe
from tests.engine.factories import SecurityInfoFactory, backtest, price_bars, session_times, utc

ES = SecurityInfoFactory.build(symbol="ES", asset_type=AssetType.FUTURE, multiplier=Decimal(50), tick_size=Decimal("0.25"))
MSFT = SecurityInfoFactory.build(symbol="MSFT")
DAYS = session_times(date(2020, 1, 2), date(2020, 1, 31), daily=True)
ES_DAYS = session_times(date(2020, 1, 2), date(2020, 1, 31), calendar="CMES", daily=True)
START, END = utc(2020, 1, 1), utc(2020, 2, 1)


def ledger_total(recorder):
    return sum((entry.amount for entry in recorder.all("ledger")), Decimal(0))


def test_futures_pnl_is_price_change_times_quantity_times_multiplier_and_only_pnl_moves_cash():
    rows = [(3000.0, 3001.0, 2999.0, 3000.0), (3000.0, 3006.0, 2999.0, 3005.0), (3010.0, 3012.0, 3008.0, 3011.0), (3011.0, 3012.0, 3010.0, 3011.0)]
    config = {
        "subscribe": [Subscribe("ES", AssetType.FUTURE, BarFrequency.DAY)],
        "script": {0: [PlaceOrder("ES", Intent.BUY, quantity=2)], 1: [PlaceOrder("ES", Intent.CLOSE)]},
    }
    result, recorder, strategy = backtest(
        securities=[ES], bars={("ES", "future", "day"): price_bars(ES_DAYS, rows)}, config=config, start=START, end=END,
        core={"commission": {"per_share": "2.25"}, "max_leverage": 4},
    )
    buy, sell = result.fills
    assert (buy.price, sell.price) == (Decimal("3000"), Decimal("3010"))
    kinds = [(entry.kind, entry.amount) for entry in recorder.all("ledger")]
    assert kinds == [
        ("deposit", Decimal("100000")),
        ("commission", Decimal("-4.50")),  # opening a future moves no cash but the commission
        ("variation_margin", Decimal("1000")),  # (3010 − 3000) × 2 × 50
        ("commission", Decimal("-4.50")),
    ]
    assert result.cash == Decimal("100991") == ledger_total(recorder)
    # While open, the position counts by its unrealized P&L, not its notional: at the close of
    # the second bar (3005) the portfolio was worth 100,000 − 4.50 + 5 × 2 × 50.
    points = recorder.all("equity")
    assert points[2].time == utc(2020, 1, 3, 23)  # the CME session close, 17:00 Chicago
    assert points[2].portfolio_value == Decimal("100495.50")
    [position] = [p for p in recorder.all("positions") if p.quantity == 0][-1:]
    assert position.realized_pnl == Decimal("1000")


def test_short_equity_average_cost_realized_and_unrealized_pnl():
    rows = [(100.0, 100.0, 100.0, 100.0), (100.0, 100.0, 100.0, 98.0), (95.0, 95.0, 95.0, 96.0), (94.0, 94.0, 94.0, 93.0)]
    config = {
        "subscribe": [Subscribe("MSFT")],
        "script": {
            0: [PlaceOrder("MSFT", Intent.SELL, quantity=10)],
            1: [PlaceOrder("MSFT", Intent.SELL, quantity=10)],  # adds at 95: average 97.5
            2: [PlaceOrder("MSFT", Intent.BUY_TO_CLOSE, quantity=5)],  # covers 5 at 94
        },
    }
    result, recorder, strategy = backtest(
        securities=[MSFT], bars={("MSFT", "equity", "day"): price_bars(DAYS, rows)}, config=config, start=START, end=END,
        core={"allow_short": True},
    )
    position = strategy.ctx.position("MSFT")
    assert position.quantity == -15
    assert position.average_price == Decimal("97.5")
    assert position.realized_pnl == Decimal("17.5")  # (97.5 − 94) × 5
    assert position.unrealized_pnl == Decimal("67.5")  # (97.5 − 93) × 15, at the last close
    assert position.market_value == Decimal("-1395")
    assert result.cash == Decimal("100000") + 1000 + 950 - 470 == ledger_total(recorder)
    assert result.portfolio_value == result.cash + position.market_value


def test_a_fill_through_zero_flips_the_position_at_the_fill_price():
    rows = [(100.0, 100.0, 100.0, 100.0), (100.0, 100.0, 100.0, 100.0), (110.0, 110.0, 110.0, 110.0), (110.0,) * 4]
    config = {"subscribe": [Subscribe("MSFT")],
              "script": {0: [PlaceOrder("MSFT", Intent.BUY, quantity=10)], 1: [PlaceOrder("MSFT", Intent.SELL, quantity=25)]}}
    _, _, strategy = backtest(securities=[MSFT], bars={("MSFT", "equity", "day"): price_bars(DAYS, rows)}, config=config,
                              start=START, end=END, core={"allow_short": True})
    position = strategy.ctx.position("MSFT")
    assert (position.quantity, position.average_price, position.realized_pnl) == (-15, Decimal("110"), Decimal("100"))


def test_deposit_cash_adds_a_ledger_entry_and_the_cash():
    config = {"subscribe": [Subscribe("MSFT")], "script": {1: [DepositCash(2500.5)]}}
    result, recorder, _ = backtest(securities=[MSFT], bars={("MSFT", "equity", "day"): price_bars(DAYS, [(1.0,) * 4] * 3)},
                                   config=config, start=START, end=END, core={"starting_cash": 1000})
    deposits = [(entry.time, entry.amount, entry.balance) for entry in recorder.all("ledger")]
    assert deposits == [(START, Decimal("1000"), Decimal("1000")), (utc(2020, 1, 3, 21), Decimal("2500.5"), Decimal("3500.5"))]
    assert result.cash == Decimal("3500.5")


def test_equity_points_one_per_close_time_marked_at_the_latest_closes():
    minutes = session_times(date(2020, 1, 2), date(2020, 1, 2))[:3]
    config = {"subscribe": [Subscribe("MSFT", AssetType.EQUITY, BarFrequency.MINUTE), Subscribe("AAPL", AssetType.EQUITY, BarFrequency.MINUTE)],
              "on_start": [PlaceOrder("MSFT", Intent.BUY, quantity=10)]}
    aapl = SecurityInfoFactory.build(symbol="AAPL")
    bars = {
        ("MSFT", "equity", "minute"): price_bars(minutes, [(10.0, 10.0, 10.0, 11.0), (11.0, 11.0, 11.0, 12.0), (12.0, 12.0, 12.0, 13.0)]),
        ("AAPL", "equity", "minute"): price_bars(minutes, [(5.0,) * 4] * 3),
    }
    result, recorder, _ = backtest(securities=[MSFT, aapl], bars=bars, config=config, start=START, end=END)
    points = recorder.all("equity")
    assert [p.time for p in points] == [START, utc(2020, 1, 2, 14, 31), utc(2020, 1, 2, 14, 32), utc(2020, 1, 2, 14, 33)]
    assert [p.portfolio_value for p in points] == [100000, 100010, 100020, 100030]  # bought 10 at 10
    assert list(result.equity_values) == [100000.0, 100010.0, 100020.0, 100030.0]
    # Invested from the first bar on: two of the intervals between points had a position throughout.
    assert result.exposure_fraction == 120e9 / (result.equity_times[-1] - result.equity_times[0])
