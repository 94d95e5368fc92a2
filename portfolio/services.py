"""Writing a run's ledger in batches: the recorder's path into the database.

Large append-only tables (equity points, ledger entries, fills) go through COPY on PostgreSQL
and bulk_create elsewhere; orders and positions are upserts of their latest snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection, transaction
from django.db.models import Model

from portfolio.models import EquityPoint, Fill, LedgerEntry, Order, Position

ORDER_UPDATE_FIELDS = [
    "client_order_id", "broker_order_id", "symbol", "asset_type", "intent", "side", "order_type", "time_in_force",
    "quantity", "notional", "limit_price", "stop_price", "state", "filled_quantity", "average_fill_price",
    "commission", "reject_reason", "tag", "created_at", "updated_at",
]
POSITION_UPDATE_FIELDS = ["quantity", "average_price", "last_price", "market_value", "unrealized_pnl", "realized_pnl", "updated_at"]


def rows_copy(*, model: type[Model], fields: Sequence[str], rows: Iterable[Sequence]) -> int:
    """Append rows (tuples in `fields` order; `run` given as run_id) as fast as the database allows."""
    rows = list(rows)
    if not rows:
        return 0
    columns = [model._meta.get_field(name).column for name in fields]
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(model._meta.db_table)
        column_list = ", ".join(connection.ops.quote_name(column) for column in columns)
        with connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY {table} ({column_list}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    else:
        attnames = [model._meta.get_field(name).attname for name in fields]
        model.objects.bulk_create([model(**dict(zip(attnames, row, strict=True))) for row in rows], batch_size=1000)
    return len(rows)


@transaction.atomic
def ledger_batch_record(*, run_id: int, orders=(), fills=(), positions=(), ledger=(), equity=()) -> None:
    """Store one recorder batch of engine records (runs.engine.records) for a run."""
    if orders:
        Order.objects.bulk_create(
            [
                Order(
                    run_id=run_id,
                    order_id=o.order_id,
                    client_order_id=o.client_order_id,
                    broker_order_id=o.broker_order_id or "",
                    symbol=o.symbol,
                    asset_type=str(o.asset_type),
                    intent=str(o.intent),
                    side=o.side or "",
                    order_type=str(o.order_type),
                    time_in_force=str(o.time_in_force),
                    quantity=o.quantity,
                    notional=o.notional,
                    limit_price=o.limit_price,
                    stop_price=o.stop_price,
                    state=str(o.state),
                    filled_quantity=o.filled_quantity,
                    average_fill_price=o.average_fill_price,
                    commission=o.commission,
                    reject_reason=(o.reject_reason or "")[:300],
                    tag=(o.tag or "")[:100],
                    created_at=o.created_at,
                    updated_at=o.updated_at,
                )
                for o in orders
            ],
            update_conflicts=True,
            unique_fields=["run", "order_id"],
            update_fields=ORDER_UPDATE_FIELDS,
            batch_size=1000,
        )
    if fills:
        order_pks = dict(
            Order.objects.filter(run_id=run_id, order_id__in={f.order_id for f in fills}).values_list("order_id", "pk")
        )
        rows_copy(
            model=Fill,
            fields=["run", "order", "execution_id", "time", "symbol", "asset_type", "side", "quantity", "price", "commission"],
            rows=[
                (run_id, order_pks[f.order_id], f.execution_id, f.time, f.symbol, str(f.asset_type), f.side, f.quantity, f.price, f.commission)
                for f in fills
            ],
        )
    if positions:
        Position.objects.bulk_create(
            [
                Position(
                    run_id=run_id,
                    symbol=p.symbol,
                    asset_type=str(p.asset_type),
                    quantity=p.quantity,
                    average_price=p.average_price,
                    last_price=p.last_price,
                    market_value=p.market_value,
                    unrealized_pnl=p.unrealized_pnl,
                    realized_pnl=p.realized_pnl,
                    updated_at=p.updated_at,
                )
                for p in positions
            ],
            update_conflicts=True,
            unique_fields=["run", "symbol", "asset_type"],
            update_fields=POSITION_UPDATE_FIELDS,
        )
    rows_copy(
        model=LedgerEntry,
        fields=["run", "time", "kind", "amount", "balance", "order_id", "description"],
        rows=[(run_id, e.time, e.kind, e.amount, e.balance, e.order_id, e.description[:200]) for e in ledger],
    )
    rows_copy(
        model=EquityPoint,
        fields=["run", "time", "cash", "portfolio_value"],
        rows=[(run_id, p.time, p.cash, p.portfolio_value) for p in equity],
    )
