"""The five example strategies: each bundle passes the publish checks, loads through the real
loader (helper imports included) and trades as described on in-memory synthetic data."""

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from runs.engine.records import BarArrays
from strategies.bundle import bundle_files_check, bundle_read_folder, module_docstring
from strategies.loader import load_strategy
from strategies.schema import parameters_from_schema, schema_check, strategy_values_validate
from strategies.sdk import AssetType, OrderState, OrderType
from tests.engine.factories import SecurityInfoFactory, backtest, price_bars, session_times, utc, walk_bars

EXAMPLES = Path(__file__).resolve().parents[2] / "strategies" / "examples"
SLUGS = ["buy_and_hold", "sma_crossover", "bollinger_reversion", "breakout", "es_trend"]
MSFT = SecurityInfoFactory.build(symbol="MSFT")
ES = SecurityInfoFactory.build(symbol="ES", asset_type=AssetType.FUTURE, multiplier=Decimal(50), tick_size=Decimal("0.25"))
DAILY = walk_bars(session_times(date(2019, 1, 2), date(2020, 12, 31), daily=True), seed=5, volatility=0.02)
ES_MINUTES = walk_bars(session_times(date(2020, 3, 2), date(2020, 3, 13), calendar="CMES"), seed=6, start=3000.0, volatility=0.0008, tick=0.25)
MARKET = {("MSFT", "equity", "day"): DAILY, ("ES", "future", "minute"): ES_MINUTES}
YEARS = (utc(2019, 1, 1), utc(2021, 1, 1))


def bundle(slug):
    return bundle_read_folder(EXAMPLES / slug)


def parameters(slug, **overrides):
    """The run's strategy section as the run form would produce it: the defaults, validated."""
    schema, errors = schema_check(bundle(slug)["config_schema.json"])
    assert errors == []
    recognised = SimpleNamespace(status="recognised", message="")
    values, problems = strategy_values_validate(schema=schema, values=overrides, security_validate=lambda **_: recognised)
    assert problems == {}
    return values


def run(slug, *, start=YEARS[0], end=YEARS[1], core=None, market=MARKET, **overrides):
    files = bundle(slug)
    loaded = load_strategy(files=files, label=f"{slug}@1")
    return backtest(
        loaded.strategy_class, securities=[MSFT, ES], bars=market, core=core, config=parameters(slug, **overrides),
        start=start, end=end, strategy_file_prefix=loaded.file_prefix,
    )


def assert_books_balance(result, recorder):
    assert result.status == "complete", result.error_message
    assert sum((entry.amount for entry in recorder.all("ledger")), Decimal(0)) == result.cash
    assert recorder.all("equity")[-1].portfolio_value == float(result.portfolio_value)  # the nearest float
    assert "strategy_exception" not in recorder.issues() and "invalid_action" not in recorder.issues()


@pytest.mark.parametrize("slug", SLUGS)
def test_each_example_is_a_valid_bundle_with_a_described_form(slug):
    files = bundle(slug)
    assert bundle_files_check(files) == []
    assert len(module_docstring(files["strategy.py"])) > 80
    schema = json.loads(files["config_schema.json"])
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    for name, definition in schema["properties"].items():
        assert definition["title"] and definition["description"], name
        assert "default" in definition or "const" in definition, name
    kinds = {p.name: (p.kind, p.asset_type) for p in parameters_from_schema(schema_check(files["config_schema.json"])[0])}
    expected_asset = "FUTURE" if slug == "es_trend" else "EQUITY"
    assert kinds["symbol"] == ("symbol", expected_asset)
    assert kinds["frequency"][0] == "bar_frequency"
    strategy_source = files["strategy.py"]
    imports = [line.split()[1] for line in strategy_source.splitlines() if line.startswith(("import ", "from "))]
    assert set(imports) <= {"strategies.sdk", "strategies.sdk.indicators", "math", "signals"}


def test_the_frequency_choices_are_the_documented_ones():
    def frequency(slug):
        return json.loads(bundle(slug)["config_schema.json"])["properties"]["frequency"]

    assert frequency("buy_and_hold")["enum"] == ["day", "minute"]
    assert frequency("sma_crossover")["enum"] == ["day", "hour", "minute"]
    assert frequency("es_trend")["const"] == "minute"
    assert parameters("sma_crossover") == {"symbol": "MSFT", "fast": 10, "slow": 20, "frequency": "day"}
    assert parameters("es_trend")["symbol"] == "ES"


def test_buy_and_hold_invests_all_the_cash_once_and_holds():
    result, recorder, _ = run("buy_and_hold")
    assert_books_balance(result, recorder)
    [fill] = result.fills
    assert fill.side == "buy" and fill.price == Decimal(repr(float(DAILY.open[1]))).quantize(Decimal("0.00000001"))
    assert fill.quantity == int(Decimal(100000) / fill.price)
    assert result.cash < fill.price  # what is left cannot buy another share
    closing = Decimal(repr(float(DAILY.close[-1]))).quantize(Decimal("0.00000001"))
    assert result.portfolio_value == result.cash + fill.quantity * closing
    assert [line.message for line in recorder.all("logs")][0].startswith("buying MSFT with all the cash")


def test_sma_crossover_alternates_all_in_entries_and_full_exits_through_its_helper_module():
    result, recorder, _ = run("sma_crossover", fast=5, slow=15)
    assert_books_balance(result, recorder)
    sides = [fill.side for fill in result.fills]
    assert len(sides) >= 6 and sides == ["buy", "sell"] * (len(sides) // 2) + ["buy"] * (len(sides) % 2)
    orders = recorder.orders()
    assert {order.tag for order in orders.values()} == {"entry", "exit"}
    for buy, sell in zip(result.fills[::2], result.fills[1::2], strict=False):
        assert buy.quantity == sell.quantity


def test_bollinger_reversion_buys_at_the_lower_band_and_sells_at_the_middle_with_resting_limits():
    result, recorder, _ = run("bollinger_reversion")
    assert_books_balance(result, recorder)
    orders = list(recorder.orders().values())
    assert {order.order_type for order in orders} == {OrderType.LIMIT}
    filled = [order for order in orders if order.state == OrderState.FILLED]
    assert len(filled) >= 4
    assert {order.tag for order in filled} == {"entry", "exit"}
    assert any(order.state == OrderState.CANCELLED and order.reject_reason == "cancelled by the strategy" for order in orders)
    for order in filled:  # never worse than the limit, on the tick grid
        assert order.limit_price == order.limit_price.quantize(Decimal("0.01"))
        if order.tag == "entry":
            assert order.average_fill_price <= order.limit_price
        else:
            assert order.average_fill_price >= order.limit_price


def test_breakout_enters_on_a_buy_stop_above_the_channel_and_exits_on_a_sell_stop():
    result, recorder, _ = run("breakout", lookback=10)
    assert_books_balance(result, recorder)
    orders = list(recorder.orders().values())
    assert {order.order_type for order in orders} == {OrderType.STOP}
    filled = [order for order in orders if order.state == OrderState.FILLED]
    entries = [order for order in filled if order.tag == "entry"]
    exits = [order for order in filled if order.tag == "exit"]
    assert len(entries) >= 2 and len(exits) >= 1
    assert all(order.average_fill_price >= order.stop_price for order in entries)  # a buy stop fills at or above
    assert all(order.average_fill_price <= order.stop_price for order in exits)


def test_es_trend_trades_both_sides_with_the_contract_multiplier_and_a_trailing_stop():
    window = {"start": utc(2020, 3, 1), "end": utc(2020, 3, 14)}
    result, recorder, _ = run("es_trend", core={"allow_short": True, "starting_cash": 250000}, **window)
    assert_books_balance(result, recorder)
    sides = {fill.side for fill in result.fills}
    assert sides == {"buy", "sell"}
    assert all(fill.quantity == 1 for fill in result.fills)
    held, positions = 0, []
    for fill in result.fills:
        held += fill.quantity if fill.side == "buy" else -fill.quantity
        positions.append(held)
    assert min(positions) == -1 and max(positions) == 1
    kinds = {entry.kind for entry in recorder.all("ledger")}
    assert kinds == {"deposit", "variation_margin"}  # futures move cash by realized P&L only
    margin = sum(entry.amount for entry in recorder.all("ledger") if entry.kind == "variation_margin")
    assert margin == result.cash - 250000
    assert any(order.tag == "stop" and order.state == OrderState.FILLED for order in recorder.orders().values())
    # Realized P&L is price change × contracts × 50: every amount is a multiple of 0.25 × 50.
    assert all(entry.amount % Decimal("12.5") == 0 for entry in recorder.all("ledger") if entry.kind == "variation_margin")


def test_es_trend_goes_long_only_when_short_selling_is_refused():
    window = {"start": utc(2020, 3, 1), "end": utc(2020, 3, 14)}
    result, recorder, _ = run("es_trend", core={"starting_cash": 250000}, **window)
    assert result.status == "complete"
    held = 0
    for fill in result.fills:
        held += fill.quantity if fill.side == "buy" else -fill.quantity
        assert held >= 0
    assert recorder.issues()["order_rejected"][0] == 1  # one refused sell, then no more tries
    assert any("trading long only" in line.message for line in recorder.all("logs"))
    assert any(fill.side == "buy" for fill in result.fills)


def test_buy_and_hold_on_minute_bars():
    minutes = session_times(date(2020, 1, 2), date(2020, 1, 3))
    market = {("MSFT", "equity", "minute"): price_bars(minutes, [(50.0, 50.5, 49.5, 50.0)] * len(minutes))}
    result, recorder, _ = run("buy_and_hold", start=utc(2020, 1, 2), end=utc(2020, 1, 4), market=market, frequency="minute")
    assert_books_balance(result, recorder)
    assert [(fill.quantity, fill.time) for fill in result.fills] == [(2000, utc(2020, 1, 2, 14, 31))]


def test_an_example_with_no_data_in_the_window_reports_it():
    empty = {("MSFT", "equity", "day"): BarArrays(*(DAILY.times[:0], *[DAILY.open[:0]] * 5))}
    result, recorder, _ = run("sma_crossover", market=empty)
    assert result.status == "error"
    assert "data_missing" in recorder.issues()
