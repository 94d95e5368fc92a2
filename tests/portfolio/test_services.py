"""Storing a run's results: the equity curve in packed chunks, orders and the run's order
statistics. Depends on: the test database."""

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest

from portfolio.models import EquityChunk
from portfolio.selectors import OrderMetrics, order_metrics
from portfolio.services import equity_append, ledger_batch_record, order_stats_apply
from tests.portfolio.factories import stored_equity
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db
MINUTE = 60 * 10**9
T0 = 1_483_453_800 * 10**9  # 2017-01-03 14:30 UTC


def curve(first: int, count: int):
    times = T0 + np.arange(first, first + count, dtype=np.int64) * MINUTE
    values = 100_000 + np.sin(np.arange(first, first + count) / 50) * 1_000
    return times, values, values - 5_000


def test_batches_top_up_a_small_last_chunk_then_open_new_ones_and_read_back_exactly():
    run = RunFactory()
    batches = [curve(0, 5_000), curve(5_000, 70_000), curve(75_000, 10_000)]
    for times, values, cash in batches:
        assert equity_append(run_id=run.pk, times=times, portfolio_values=values, cash_values=cash) == len(times)

    chunks = list(EquityChunk.objects.filter(run=run).order_by("sequence"))
    # 5,000 points are topped up to a full chunk; the rest of that batch starts the next one,
    # which is big enough that the last batch starts its own.
    assert [(c.sequence, c.points) for c in chunks] == [(0, EquityChunk.CAPACITY), (1, 75_000 - EquityChunk.CAPACITY), (2, 10_000)]
    assert chunks[1].first_time.timestamp() * 10**9 == T0 + EquityChunk.CAPACITY * MINUTE
    times, values, cash = stored_equity(run)
    for stored, column in ((times, 0), (values, 1), (cash, 2)):
        np.testing.assert_array_equal(stored, np.concatenate([batch[column] for batch in batches]))


def test_each_chunk_keeps_a_small_chart_with_its_extremes():
    run = RunFactory()
    times, values, cash = curve(0, 20_000)
    values[7_777], values[12_345] = 250_000.0, 1_000.0
    equity_append(run_id=run.pk, times=times, portfolio_values=values, cash_values=cash)
    chunk = EquityChunk.objects.get(run=run)
    chart_values = np.frombuffer(bytes(chunk.chart_values), dtype="<f8")
    chart_times = np.frombuffer(bytes(chunk.chart_times), dtype="<i8")
    assert len(chart_values) == len(chart_times) <= EquityChunk.CHART_POINTS
    assert chart_values.max() == 250_000.0 and chart_values.min() == 1_000.0
    assert chart_times[0] == times[0] and chart_times[-1] == times[-1]


def test_points_not_after_the_stored_ones_are_refused_and_nothing_is_written():
    run = RunFactory()
    times, values, cash = curve(0, 10)
    equity_append(run_id=run.pk, times=times, portfolio_values=values, cash_values=cash)
    with pytest.raises(ValueError, match="not after the last stored one"):
        equity_append(run_id=run.pk, times=times[-2:], portfolio_values=values[-2:], cash_values=cash[-2:])
    with pytest.raises(ValueError, match="strictly increasing"):
        equity_append(run_id=run.pk, times=times[::-1] + 100 * MINUTE, portfolio_values=values, cash_values=cash)
    with pytest.raises(ValueError, match="same length"):
        equity_append(run_id=run.pk, times=times, portfolio_values=values[:3], cash_values=cash)
    assert len(stored_equity(run)[0]) == 10


def order_record(order_id: int, state: str, filled: str = "0"):
    from runs.engine.records import OrderRecord
    from strategies.sdk.enums import AssetType, Intent, OrderState, OrderType, TimeInForce

    moment = datetime(2017, 1, 3, 15, order_id, tzinfo=UTC)
    return OrderRecord(
        order_id, f"r-{order_id}", "MSFT", AssetType.EQUITY, Intent.BUY, "buy", OrderType.MARKET, TimeInForce.DAY,
        Decimal(10), None, None, None, OrderState(state), Decimal(filled), Decimal("62.5") if filled != "0" else None,
        Decimal(0), "", "", moment, moment,
    )


def test_each_batch_moves_its_orders_between_states_in_the_runs_order_statistics():
    from runs.engine.records import FillRecord
    from strategies.sdk.enums import AssetType

    run = RunFactory()
    stats = {}
    first = ledger_batch_record(run_id=run.pk, orders=[order_record(1, "working"), order_record(2, "rejected"), order_record(3, "working")])
    stats = order_stats_apply(stats, first)
    assert stats["orders"] == {"rejected": 1, "working": 2} and stats["fills"] == 0
    fill = FillRecord("x1", 1, datetime(2017, 1, 3, 15, 5, tzinfo=UTC), "MSFT", AssetType.EQUITY, "buy", Decimal(10), Decimal("62.5"), Decimal("1.25"))
    second = ledger_batch_record(run_id=run.pk, orders=[order_record(1, "working"), order_record(1, "filled", "10"), order_record(3, "cancelled")], fills=[fill])
    stats = order_stats_apply(stats, second)
    assert stats == {"orders": {"cancelled": 1, "filled": 1, "rejected": 1}, "fills": 1, "filled_quantity": "10", "commission": "1.25"}
    assert OrderMetrics.from_stats(stats) == order_metrics(run_id=run.pk)  # the same figures as counting the stored rows


def _stored_rows(run):
    from portfolio.models import Fill, Order

    orders = sorted(Order.objects.filter(run=run).values_list("order_id", "state", "filled_quantity", "average_fill_price"))
    fills = sorted(Fill.objects.filter(run=run).values_list("execution_id", "order__order_id", "quantity", "price"))
    return orders, fills


@pytest.mark.parametrize("batches_of", [1, 3])
def test_the_sole_writers_map_of_stored_orders_gives_the_same_rows_and_statistics_as_looking_them_up(batches_of):
    """With `stored_orders` a batch looks nothing up; it must store and count exactly what the
    lookup path does, and leave the map holding every stored order's key and latest state."""
    from portfolio.models import Order
    from runs.engine.records import FillRecord
    from strategies.sdk.enums import AssetType

    def fill(execution, order_id):
        return FillRecord(execution, order_id, datetime(2017, 1, 3, 15, 30, tzinfo=UTC), "MSFT", AssetType.EQUITY, "buy", Decimal(10), Decimal("62.5"), Decimal(0))

    batches = [
        dict(orders=[order_record(1, "working"), order_record(2, "rejected"), order_record(3, "working")]),
        dict(orders=[order_record(1, "filled", "10"), order_record(4, "working")], fills=[fill("x1", 1)]),
        dict(orders=[order_record(3, "cancelled"), order_record(4, "filled", "10"), order_record(5, "filled", "10")], fills=[fill("x4", 4), fill("x5", 5)]),
    ]
    if batches_of == 3:  # everything in one batch: orders new and finished at once
        batches = [{key: [item for batch in batches for item in batch.get(key, [])] for key in ("orders", "fills")}]
    looked_up, mapped, stored_orders = RunFactory(), RunFactory(), {}
    stats_looked_up, stats_mapped = {}, {}
    for batch in batches:
        stats_looked_up = order_stats_apply(stats_looked_up, ledger_batch_record(run_id=looked_up.pk, **batch))
        stats_mapped = order_stats_apply(stats_mapped, ledger_batch_record(run_id=mapped.pk, stored_orders=stored_orders, **batch))

    assert stats_mapped == stats_looked_up
    assert stats_mapped["orders"] == {"cancelled": 1, "filled": 3, "rejected": 1} and stats_mapped["fills"] == 3
    assert _stored_rows(mapped) == _stored_rows(looked_up)
    assert stored_orders == {order_id: (pk, state) for order_id, pk, state in Order.objects.filter(run=mapped).values_list("order_id", "pk", "state")}
