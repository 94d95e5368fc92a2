"""Golden test: the SMA Crossover example on real MSFT daily bars against a plain loop written
here from the rules (no engine code), trade for trade and to the cent."""

import csv
import gzip
import json
import math
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
import pytest

from runs.engine.records import BarArrays
from strategies.loader import load_strategy
from tests.engine.factories import SecurityInfoFactory, backtest, utc

DATA = Path(__file__).resolve().parent.parent / "data" / "MSFT_1d.csv.gz"
EXAMPLE = Path(__file__).resolve().parents[2] / "strategies" / "examples" / "sma_crossover"
START, END = utc(2005, 1, 1), utc(2017, 11, 11)
CENT = Decimal("0.01")


def msft_rows():
    with gzip.open(DATA, "rt") as handle:
        rows = [
            (datetime.strptime(row["date"], "%Y-%m-%d").replace(tzinfo=UTC), *(float(row[k]) for k in ("open", "high", "low", "close", "volume")))
            for row in csv.DictReader(handle)
        ]
    return [row for row in rows if START <= row[0] < END]


def reference_run(rows, *, fast, slow, cash, bps):
    """Long-only SMA crossover by the book: signals at the close, fills at the next open."""
    cash = Decimal(cash)
    rate = Decimal(bps) / Decimal(10000)
    held, closes, was_above, pending, trades = 0, [], None, None, []

    def fee(quantity, price):
        return (quantity * price * rate).quantize(Decimal("0.00000001"), ROUND_HALF_EVEN)

    def eight_places(value):  # prices are the data's, to the 8 places money is kept in
        return Decimal(repr(value)).quantize(Decimal("0.00000001"), ROUND_HALF_EVEN)

    for day, open_, _high, _low, close, _volume in rows:
        price = eight_places(open_)
        if pending is not None:
            if pending[0] == "buy":
                budget = pending[1]
                quantity = math.floor(budget / price)
                while quantity > 0 and quantity * price + fee(quantity, price) > budget:
                    quantity -= 1
                if quantity > 0:
                    cash -= quantity * price + fee(quantity, price)
                    held = quantity
                    trades.append(("buy", day.date(), quantity, price))
            else:
                cash += held * price - fee(held, price)
                trades.append(("sell", day.date(), held, price))
                held = 0
            pending = None
        closes.append(close)
        if len(closes) < slow:
            continue
        above = math.fsum(closes[-fast:]) / fast > math.fsum(closes[-slow:]) / slow
        if was_above is not None and above != was_above:
            if above and held == 0:
                pending = ("buy", cash)
            elif not above and held > 0:
                pending = ("sell",)
        was_above = above
    return trades, cash, cash + held * eight_places(rows[-1][4])


def engine_run(rows, *, fast, slow, cash, bps):
    files = {path.name: path.read_text() for path in EXAMPLE.iterdir() if path.suffix in (".py", ".json")}
    loaded = load_strategy(files=files, label="sma-crossover@1")
    schema = json.loads(files["config_schema.json"])
    assert schema["properties"]["fast"]["default"] == 10
    times = np.array([int(row[0].timestamp()) * 1_000_000_000 for row in rows], dtype=np.int64)
    columns = [np.array([row[i] for row in rows]) for i in range(1, 6)]
    bars = {("MSFT", "equity", "day"): BarArrays(times, *columns)}
    core = {"starting_cash": cash, "commission": {"bps": bps} if bps else None}
    result, recorder, _ = backtest(
        loaded.strategy_class, securities=[SecurityInfoFactory.build(symbol="MSFT")], bars=bars, core=core,
        config={"symbol": "MSFT", "fast": fast, "slow": slow, "frequency": "day"}, start=START, end=END,
        strategy_file_prefix=loaded.file_prefix,
    )
    assert result.status == "complete"
    trades = [(fill.side, fill.time.date(), fill.quantity, fill.price) for fill in result.fills]
    return trades, result, recorder


@pytest.mark.parametrize("bps", [0, 5])
def test_sma_crossover_matches_a_plain_loop_trade_for_trade(bps):
    rows = msft_rows()
    assert len(rows) > 3000
    expected_trades, expected_cash, expected_equity = reference_run(rows, fast=10, slow=20, cash=100000, bps=bps)
    trades, result, recorder = engine_run(rows, fast=10, slow=20, cash=100000, bps=bps)
    assert len(expected_trades) > 100
    assert trades == expected_trades
    assert result.cash == expected_cash
    assert result.portfolio_value.quantize(CENT) == expected_equity.quantize(CENT)
    assert recorder.all("equity")[-1].portfolio_value == float(result.portfolio_value)
    assert sum((entry.amount for entry in recorder.all("ledger")), Decimal(0)) == result.cash
    if bps:
        assert sum(fill.commission for fill in result.fills) > 0
