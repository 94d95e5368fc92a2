"""Writing a run's ledger in batches: the recorder's path into the database.

Large append-only tables (equity points, ledger entries, fills) go through COPY on PostgreSQL
and bulk_create elsewhere; orders and positions are upserts of their latest snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Model

from portfolio.models import EquityPoint, Fill, LedgerEntry, Order, Position

ORDER_UPDATE_FIELDS = [
    "client_order_id", "broker_order_id", "symbol", "asset_type", "intent", "side", "order_type", "time_in_force",
    "quantity", "notional", "limit_price", "stop_price", "state", "filled_quantity", "average_fill_price",
    "commission", "reject_reason", "tag", "created_at", "updated_at",
]
POSITION_UPDATE_FIELDS = ["quantity", "average_price", "last_price", "market_value", "unrealized_pnl", "realized_pnl", "updated_at"]


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value) -> str:
    """One value in COPY's text format. Formatting here beats psycopg's per-value adapters
    several times over on a million rows, and Decimal/str keep every digit."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _copy_into(cursor, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    quote = connection.ops.quote_name
    with cursor.copy(f"COPY {quote(table)} ({', '.join(quote(c) for c in columns)}) FROM STDIN") as copy:
        chunk = []
        for row in rows:
            chunk.append("\t".join(map(_copy_text, row)))
            if len(chunk) == 10_000:
                copy.write("\n".join(chunk) + "\n")
                chunk.clear()
        if chunk:
            copy.write("\n".join(chunk) + "\n")


def rows_copy(*, model: type[Model], fields: Sequence[str], rows: Iterable[Sequence]) -> int:
    """Append rows (tuples in `fields` order; `run` given as run_id) as fast as the database allows."""
    rows = list(rows)
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        columns = [model._meta.get_field(name).column for name in fields]
        with connection.cursor() as cursor:
            _copy_into(cursor.cursor, model._meta.db_table, columns, rows)
    else:
        attnames = [model._meta.get_field(name).attname for name in fields]
        model.objects.bulk_create([model(**dict(zip(attnames, row, strict=True))) for row in rows], batch_size=1000)
    return len(rows)


def rows_upsert(*, model: type[Model], fields: Sequence[str], rows: Sequence[Sequence], unique_fields: Sequence[str]) -> None:
    """Insert rows, or update the row with the same `unique_fields` (the latest snapshot wins).
    On PostgreSQL: COPY into a temporary table, then one INSERT … ON CONFLICT."""
    if not rows:
        return
    key_positions = [list(fields).index(name) for name in unique_fields]
    # The latest snapshot of a key wins; ON CONFLICT may not touch one row twice in a statement.
    rows = list({tuple(row[i] for i in key_positions): row for row in rows}.values())
    meta = model._meta
    if connection.vendor != "postgresql":
        attnames = [meta.get_field(name).attname for name in fields]
        model.objects.bulk_create(
            [model(**dict(zip(attnames, row, strict=True))) for row in rows],
            update_conflicts=True,
            unique_fields=list(unique_fields),
            update_fields=[name for name in fields if name not in unique_fields],
            batch_size=1000,
        )
        return
    quote = connection.ops.quote_name
    columns = [meta.get_field(name).column for name in fields]
    conflict = [meta.get_field(name).column for name in unique_fields]
    staging = f"staging_{meta.db_table}"
    column_list = ", ".join(quote(c) for c in columns)
    updates = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in columns if c not in conflict)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS SELECT {column_list} FROM {quote(meta.db_table)} WITH NO DATA"
        )
        _copy_into(cursor.cursor, staging, columns, rows)
        cursor.execute(
            f"INSERT INTO {quote(meta.db_table)} ({column_list}) SELECT {column_list} FROM {staging} "
            f"ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO UPDATE SET {updates}"
        )
        cursor.execute(f"TRUNCATE {staging}")


@transaction.atomic
def ledger_batch_record(*, run_id: int, orders=(), fills=(), positions=(), ledger=(), equity=()) -> None:
    """Store one recorder batch of engine records (runs.engine.records) for a run."""
    rows_upsert(
        model=Order,
        fields=["run", "order_id", *ORDER_UPDATE_FIELDS],
        unique_fields=["run", "order_id"],
        rows=[
            (
                run_id, o.order_id, o.client_order_id, o.broker_order_id or "", o.symbol, str(o.asset_type), str(o.intent),
                o.side or "", str(o.order_type), str(o.time_in_force), o.quantity, o.notional, o.limit_price, o.stop_price,
                str(o.state), o.filled_quantity, o.average_fill_price, o.commission, (o.reject_reason or "")[:300],
                (o.tag or "")[:100], o.created_at, o.updated_at,
            )
            for o in orders
        ],
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
    rows_upsert(
        model=Position,
        fields=["run", "symbol", "asset_type", *POSITION_UPDATE_FIELDS],
        unique_fields=["run", "symbol", "asset_type"],
        rows=[
            (run_id, p.symbol, str(p.asset_type), p.quantity, p.average_price, p.last_price, p.market_value, p.unrealized_pnl, p.realized_pnl, p.updated_at)
            for p in positions
        ],
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
