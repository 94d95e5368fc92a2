"""Reading a run's ledger for the Performance tab: the summary figures, open positions, orders
by state and the equity curve for the chart."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
from django.db.models import Count, Q, QuerySet, Sum

from portfolio.metrics import downsample, drawdown_series
from portfolio.models import EquityChunk, Fill, LedgerEntry, Order, OrderState, Position

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

    @classmethod
    def from_stats(cls, stats: dict) -> OrderMetrics:
        """From the statistics the recorder keeps on the run (portfolio.services.order_stats_apply)."""
        states = stats.get("orders") or {}
        return cls(
            total=sum(states.values()),
            by_group={group: sum(states.get(str(state), 0) for state in members) for group, (_label, members) in ORDER_STATE_GROUPS.items()},
            fills=int(stats.get("fills") or 0),
            filled_quantity=Decimal(stats.get("filled_quantity") or 0),
            commission=Decimal(stats.get("commission") or 0),
        )

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
    """Counted from the stored orders and fills (what the recorder's statistics must agree with)."""
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
        # Kept on the run by the recorder: no aggregate over a run's 100,000 orders per refresh.
        # Runs recorded without them (test data made by hand) are counted.
        orders=OrderMetrics.from_stats(run.order_stats) if run.order_stats else order_metrics(run_id=run.pk),
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
    """The run's equity curve and drawdown for the chart, at most `max_points` points per series
    however long the run. Built from each chunk's stored reduction (every bucket's lowest and
    highest points), so a million-point curve reads a few thousand points; drawdown is computed
    on that series before the last reduction, so the deepest trough survives."""
    rows = list(EquityChunk.objects.filter(run_id=run_id).order_by("sequence").values_list("points", "chart_times", "chart_values"))
    if not rows:
        return EquitySeries([], [], [], [], 0)
    times = np.concatenate([np.frombuffer(bytes(chart_times), dtype="<i8") for _points, chart_times, _values in rows]) // 10**9
    values = np.concatenate([np.frombuffer(bytes(chart_values), dtype="<f8") for _points, _times, chart_values in rows])
    drawdowns = drawdown_series(values)
    equity_times, equity_values = downsample(times, values, max_points)
    # NaN (no capital to draw down) would hide a bucket's real extremes; rank it as no drawdown.
    ranked = np.where(np.isnan(drawdowns), 0.0, drawdowns)
    drawdown_times, _ranked = downsample(times, ranked, max_points)
    picked = np.round(drawdowns[np.searchsorted(times, drawdown_times)], 6)
    drawdown_values = [None if value != value else value for value in picked.tolist()]  # NaN -> None
    return EquitySeries(
        times=equity_times.tolist(),
        values=np.round(equity_values, 2).tolist(),
        drawdown_times=drawdown_times.tolist(),
        drawdowns=drawdown_values,
        points=sum(points for points, _times, _values in rows),
    )
