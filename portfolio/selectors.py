"""Reading a run's ledger for the Performance tab: the summary figures, open positions, orders
by state and the equity curve for the chart."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum

from portfolio.metrics import downsample, drawdown_series
from portfolio.models import EquityPoint, Fill, LedgerEntry, Order, OrderState, Position

CHART_MAX_POINTS = 2000
# The Performance tab's order groups (product.md §8), in display order.
ORDER_STATE_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "filled": ("Filled", (OrderState.FILLED,)),
    "open": ("Pending / working", (OrderState.PENDING, OrderState.WORKING, OrderState.PARTIALLY_FILLED)),
    "cancelled": ("Cancelled / expired", (OrderState.CANCELLED, OrderState.EXPIRED)),
    "rejected": ("Rejected", (OrderState.REJECTED,)),
}


@dataclass(frozen=True)
class OrderMetrics:
    total: int
    by_group: dict[str, int]  # ORDER_STATE_GROUPS key -> count
    fills: int
    filled_quantity: Decimal
    commission: Decimal

    @property
    def fill_rate(self) -> float | None:
        """Share of the orders that reached a final state which filled (working ones not counted)."""
        decided = self.by_group["filled"] + self.by_group["cancelled"] + self.by_group["rejected"]
        return self.by_group["filled"] / decided if decided else None


@dataclass(frozen=True)
class PerformanceSummary:
    portfolio_value: Decimal | None
    cash: Decimal | None
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    pnl: Decimal | None  # since the deposits, as kept on the run
    open_positions: int
    orders: OrderMetrics
    metrics: dict = field(default_factory=dict)


def positions_open(*, run_id: int) -> QuerySet[Position]:
    return Position.objects.filter(run_id=run_id).exclude(quantity=0).order_by("symbol", "asset_type")


def order_metrics(*, run_id: int) -> OrderMetrics:
    counts = Order.objects.filter(run_id=run_id).aggregate(
        total=Count("id"),
        **{
            group: Count("id", filter=Q(state__in=states))
            for group, (_label, states) in ORDER_STATE_GROUPS.items()
        },
    )
    fills = Fill.objects.filter(run_id=run_id).aggregate(count=Count("id"), quantity=Sum("quantity"), commission=Sum("commission"))
    return OrderMetrics(
        total=counts.pop("total"),
        by_group=counts,
        fills=fills["count"],
        filled_quantity=fills["quantity"] or Decimal(0),
        commission=fills["commission"] or Decimal(0),
    )


def performance_summary(*, run) -> PerformanceSummary:
    """The headline figures of a run's Performance tab: portfolio value (kept current on the run
    by the recorder), cash (the ledger's last balance), P&L from positions, and order counts."""
    position_totals = Position.objects.filter(run_id=run.pk).aggregate(
        unrealized=Sum("unrealized_pnl", filter=~Q(quantity=0)),
        realized=Sum("realized_pnl"),
        open=Count("id", filter=~Q(quantity=0)),
    )
    last_entry = LedgerEntry.objects.filter(run_id=run.pk).order_by("-time", "-id").values_list("balance", flat=True).first()
    return PerformanceSummary(
        portfolio_value=run.portfolio_value,
        cash=last_entry,
        unrealized_pnl=position_totals["unrealized"] or Decimal(0),
        realized_pnl=position_totals["realized"] or Decimal(0),
        pnl=run.pnl,
        open_positions=position_totals["open"],
        orders=order_metrics(run_id=run.pk),
        metrics=run.metrics or {},
    )


def orders_recent(*, run_id: int, group: str = "", limit: int = 50) -> list[Order]:
    """The newest orders of a run, optionally of one ORDER_STATE_GROUPS group."""
    orders = Order.objects.filter(run_id=run_id)
    if group in ORDER_STATE_GROUPS:
        orders = orders.filter(state__in=ORDER_STATE_GROUPS[group][1])
    return list(orders.order_by("-order_id")[:limit])


@dataclass(frozen=True)
class EquitySeries:
    """Chart data: UNIX seconds and values, each series at most CHART_MAX_POINTS long."""

    times: list[int]
    values: list[float]
    drawdown_times: list[int]
    drawdowns: list[float | None]  # fraction below the running peak; None where undefined
    points: int  # stored points before downsampling

    def as_chart_data(self) -> dict:
        return {
            "equity": [self.times, self.values],
            "drawdown": [self.drawdown_times, self.drawdowns],
            "points": self.points,
        }


def equity_series(*, run_id: int, max_points: int = CHART_MAX_POINTS) -> EquitySeries:
    """The run's equity curve and drawdown, downsampled on the server so the page carries at
    most `max_points` points per series however long the run (drawdown is computed on the full
    curve first, so its deepest point survives)."""
    times, values = _equity_arrays(run_id=run_id)
    if not len(times):
        return EquitySeries([], [], [], [], 0)
    drawdowns = drawdown_series(values)
    equity_times, equity_values = downsample(times, values, max_points)
    # NaN (no capital to draw down) would hide a bucket's real extremes; rank it as no drawdown.
    ranked = np.where(np.isnan(drawdowns), 0.0, drawdowns)
    drawdown_times, _ranked = downsample(times, ranked, max_points)
    picked = np.searchsorted(times, drawdown_times)
    drawdown_values = [None if np.isnan(value) else round(float(value), 6) for value in drawdowns[picked]]
    return EquitySeries(
        times=equity_times.tolist(),
        values=[round(float(value), 2) for value in equity_values],
        drawdown_times=drawdown_times.tolist(),
        drawdowns=drawdown_values,
        points=len(times),
    )


def _equity_arrays(*, run_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(epoch seconds, portfolio value) of every equity point, oldest first. The database does
    the conversions, so a million points arrive as plain numbers instead of datetime and Decimal
    objects."""
    table = connection.ops.quote_name(EquityPoint._meta.db_table)
    if connection.vendor == "postgresql":
        sql = f"SELECT EXTRACT(EPOCH FROM time)::bigint, portfolio_value::float8 FROM {table} WHERE run_id = %s ORDER BY time"
    else:
        sql = f"SELECT CAST(strftime('%%s', time) AS INTEGER), CAST(portfolio_value AS REAL) FROM {table} WHERE run_id = %s ORDER BY time"
    with connection.cursor() as cursor:
        cursor.execute(sql, [run_id])
        rows = cursor.fetchall()
    if not rows:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    pairs = np.array(rows, dtype=np.float64)
    return pairs[:, 0].astype(np.int64), pairs[:, 1]
