"""Performance-tab reads of a run's ledger. Depends on: the test database and the factories."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from portfolio.selectors import equity_series, order_metrics, orders_recent, performance_summary, positions_open
from tests.portfolio.factories import (
    FillFactory,
    LedgerEntryFactory,
    OrderFactory,
    PositionFactory,
    equity_points_store,
)
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2017, 1, 3, 21, tzinfo=UTC)


def test_summary_takes_cash_from_the_last_ledger_entry_and_pnl_from_positions():
    run = RunFactory(portfolio_value=Decimal("100630"), pnl=Decimal("630"))
    LedgerEntryFactory(run=run, time=T0, balance=Decimal("100000"))
    LedgerEntryFactory(run=run, time=T0 + timedelta(days=1), kind="trade", amount=Decimal("-625"), balance=Decimal("99375"))
    PositionFactory(run=run, symbol="MSFT", quantity=Decimal("10"), unrealized_pnl=Decimal("6"), realized_pnl=Decimal("4"))
    PositionFactory(run=run, symbol="AAPL", quantity=Decimal("0"), unrealized_pnl=Decimal("99"), realized_pnl=Decimal("-1.5"))
    summary = performance_summary(run=run)
    assert summary.portfolio_value == Decimal("100630") and summary.pnl == Decimal("630")
    assert summary.cash == Decimal("99375")
    assert summary.unrealized_pnl == Decimal("6")  # closed positions carry no unrealized P&L
    assert summary.realized_pnl == Decimal("2.5")
    assert summary.open_positions == 1
    assert [position.symbol for position in positions_open(run_id=run.pk)] == ["MSFT"]


def test_an_empty_run_has_no_cash_and_zero_pnl():
    summary = performance_summary(run=RunFactory())
    assert summary.cash is None and summary.unrealized_pnl == 0 and summary.orders.total == 0
    assert summary.orders.fill_rate is None


def test_orders_are_counted_and_listed_by_state_group():
    run = RunFactory()
    for state in ("filled", "filled", "pending", "working", "partially_filled", "cancelled", "expired", "rejected"):
        OrderFactory(run=run, state=state, filled_quantity=Decimal("0"))
    FillFactory(order=OrderFactory(run=run, state="filled"), commission=Decimal("1.25"), quantity=Decimal("4"))
    metrics = order_metrics(run_id=run.pk)
    assert metrics.total == 9
    assert metrics.by_group == {"filled": 3, "open": 3, "cancelled": 2, "rejected": 1}
    assert metrics.fill_rate == pytest.approx(3 / 6)
    assert metrics.fills == 1 and metrics.commission == Decimal("1.25") and metrics.filled_quantity == Decimal("4")
    assert [order.state for order in orders_recent(run_id=run.pk, group="cancelled")] == ["expired", "cancelled"]
    newest = orders_recent(run_id=run.pk, limit=2)
    assert [order.order_id for order in newest] == sorted((order.order_id for order in newest), reverse=True)


def test_equity_series_is_downsampled_keeping_the_extremes_and_the_deepest_drawdown():
    run = RunFactory()
    values = [100000 + (n % 97) * 10 for n in range(6000)]
    values[3000] = 150000  # the peak
    values[4500] = 60000  # the deepest drawdown: 60 % below the peak
    equity_points_store(run=run, times=[T0 + timedelta(minutes=n) for n in range(6000)], values=values)
    series = equity_series(run_id=run.pk, max_points=2000)
    assert series.points == 6000
    assert len(series.times) <= 2000 and len(series.drawdown_times) <= 2000
    assert series.times == sorted(series.times)
    assert max(series.values) == 150000 and min(series.values) == 60000
    assert min(value for value in series.drawdowns if value is not None) == pytest.approx(-0.6)
    assert series.times[0] == int(T0.timestamp())
    assert set(series.as_chart_data()) == {"equity", "drawdown", "points"}


def test_a_short_equity_series_comes_back_whole():
    run = RunFactory()
    equity_points_store(run=run, times=[T0, T0 + timedelta(days=1)], values=[100, 90])
    series = equity_series(run_id=run.pk)
    assert series.values == [100.0, 90.0] and series.drawdowns == [0.0, pytest.approx(-0.1)]
    assert equity_series(run_id=RunFactory().pk).points == 0

