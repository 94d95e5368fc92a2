"""Writing a run's ledger in batches: the recorder's path into the database.

Large append-only tables (ledger entries, fills) go through COPY on PostgreSQL and bulk_create
elsewhere; orders and positions are upserts of their latest snapshot; the equity curve is
appended in packed chunks (see EquityChunk).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from django.db import connection, transaction
from django.db.models import Model

from portfolio.metrics import downsample
from portfolio.models import EquityChunk, Fill, LedgerEntry, Order, Position

ORDER_UPDATE_FIELDS = [
    "client_order_id", "broker_order_id", "symbol", "asset_type", "intent", "side", "order_type", "time_in_force",
    "quantity", "notional", "limit_price", "stop_price", "state", "filled_quantity", "average_fill_price",
    "commission", "reject_reason", "tag", "created_at", "updated_at",
]
POSITION_UPDATE_FIELDS = ["quantity", "average_price", "last_price", "market_value", "unrealized_pnl", "realized_pnl", "updated_at"]


# Binary COPY type of each column type Django creates here (psycopg writes them in C).
_BINARY_TYPES = {
    "bigint": "int8", "integer": "int4", "smallint": "int2", "boolean": "bool", "text": "text", "varchar": "text",
    "numeric": "numeric", "timestamp with time zone": "timestamptz", "jsonb": "jsonb", "bytea": "bytea",
}


def _binary_type(field) -> str:
    db_type = field.db_type(connection).split("(")[0].strip()
    try:
        return _BINARY_TYPES[db_type]
    except KeyError:
        raise ValueError(f"no COPY type for {field.model.__name__}.{field.name} ({db_type})") from None


def _copy_into(cursor, table: str, fields: Sequence, rows: Iterable[Sequence]) -> None:
    """Binary COPY: psycopg encodes each value in C, several times faster on a million rows than
    formatting text in Python, and Decimal keeps every digit."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    with cursor.copy(f"COPY {quote(table)} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([_binary_type(field) for field in fields])
        write_row = copy.write_row
        for row in rows:
            write_row(row)


def rows_copy(*, model: type[Model], fields: Sequence[str], rows: Iterable[Sequence]) -> int:
    """Append rows (tuples in `fields` order; `run` given as run_id) as fast as the database allows."""
    rows = list(rows)
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            _copy_into(cursor.cursor, model._meta.db_table, [model._meta.get_field(name) for name in fields], rows)
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
        _copy_into(cursor.cursor, staging, [meta.get_field(name) for name in fields], rows)
        cursor.execute(
            f"INSERT INTO {quote(meta.db_table)} ({column_list}) SELECT {column_list} FROM {staging} "
            f"ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO UPDATE SET {updates}"
        )
        cursor.execute(f"TRUNCATE {staging}")


@dataclass(frozen=True)
class OrderStatsChange:
    """What one batch changed in a run's order statistics (see order_stats_apply)."""

    states: Counter  # order state -> change in the number of orders in it
    fills: int
    filled_quantity: Decimal
    commission: Decimal


def order_stats_apply(stats: dict, change: OrderStatsChange) -> dict:
    """The run's stored order statistics ({"orders": {state: n}, "fills": n, "filled_quantity",
    "commission"}) after a batch."""
    states = Counter(stats.get("orders") or {})
    states.update(change.states)
    return {
        "orders": {state: count for state, count in sorted(states.items()) if count},
        "fills": int(stats.get("fills") or 0) + change.fills,
        "filled_quantity": str(Decimal(stats.get("filled_quantity") or 0) + change.filled_quantity),
        "commission": str(Decimal(stats.get("commission") or 0) + change.commission),
    }


def _stored_orders(*, run_id: int, order_ids, column: str) -> dict[int, object]:
    """order id -> `column` ("state" or "id") for those of `order_ids` the run already has. Tens
    of thousands of ids a batch: one array parameter on PostgreSQL, plain tuples, no ORM rows."""
    order_ids = list(order_ids)
    if not order_ids:
        return {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT order_id, {column} FROM {Order._meta.db_table} WHERE run_id = %s AND order_id = ANY(%s)",
                [run_id, order_ids],
            )
            return dict(cursor.fetchall())
    stored = {}
    for first in range(0, len(order_ids), 5000):  # within SQLite's limit on query parameters
        stored.update(Order.objects.filter(run_id=run_id, order_id__in=order_ids[first : first + 5000]).values_list("order_id", column))
    return stored


def _new_order_pks(count: int) -> list[int]:
    """Primary keys for `count` orders about to be appended (PostgreSQL: taken from the
    table's sequence, so COPY can write them and fills can refer to them without a lookup)."""
    table = Order._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, %s)", [count])
        return [pk for (pk,) in cursor.fetchall()]


@transaction.atomic
def ledger_batch_record(
    *, run_id: int, orders=(), fills=(), positions=(), ledger=(), equity=None, stored_orders: dict | None = None
) -> OrderStatsChange:
    """Store one recorder batch of engine records (runs.engine.records) for a run; `equity` is
    the batch's EquityPoints (columns) or None. Returns how the batch changed the run's order
    statistics.

    `stored_orders` (order id -> (primary key, state)) is for the run's only writer of orders,
    which has kept it since the run had none: it then stands for the stored orders (no lookup)
    and is brought up to date here. Without it the stored orders are read from the database."""
    latest = {o.order_id: o for o in orders}  # the latest snapshot of each order wins
    if stored_orders is None:
        stored = _stored_orders(run_id=run_id, order_ids=latest, column="state")
    else:
        stored = {order_id: stored_orders[order_id][1] for order_id in latest if order_id in stored_orders}
    states = Counter(str(o.state) for o in latest.values())
    states.subtract(stored.values())
    change = OrderStatsChange(
        states=states,
        fills=len(fills),
        filled_quantity=sum((f.quantity for f in fills), Decimal(0)),
        commission=sum((f.commission for f in fills), Decimal(0)),
    )
    order_fields = ["run", "order_id", *ORDER_UPDATE_FIELDS]
    # The SDK's enums are str subclasses holding their value: stored as they are (no str()
    # per field, which costs more than the rest of the row).
    order_rows = {
        o.order_id: (
            run_id, o.order_id, o.client_order_id, o.broker_order_id or "", o.symbol, o.asset_type, o.intent,
            o.side or "", o.order_type, o.time_in_force, o.quantity, o.notional, o.limit_price, o.stop_price,
            o.state, o.filled_quantity, o.average_fill_price, o.commission, (o.reject_reason or "")[:300],
            (o.tag or "")[:100], o.created_at, o.updated_at,
        )
        for o in latest.values()
    }
    # New orders are appended; only those already stored need the slower upsert.
    new_ids = [order_id for order_id in order_rows if order_id not in stored]
    new_pks = {}
    if stored_orders is not None and new_ids and connection.vendor == "postgresql":
        new_pks = dict(zip(new_ids, _new_order_pks(len(new_ids)), strict=True))
        rows_copy(model=Order, fields=["id", *order_fields], rows=[(pk, *order_rows[order_id]) for order_id, pk in new_pks.items()])
    else:
        rows_copy(model=Order, fields=order_fields, rows=[order_rows[order_id] for order_id in new_ids])
        if stored_orders is not None and new_ids:
            new_pks = _stored_orders(run_id=run_id, order_ids=new_ids, column="id")
    rows_upsert(
        model=Order, fields=order_fields, unique_fields=["run", "order_id"], rows=[order_rows[order_id] for order_id in stored]
    )
    if stored_orders is not None:
        for order_id, order in latest.items():
            pk = new_pks[order_id] if order_id in new_pks else stored_orders[order_id][0]
            stored_orders[order_id] = (pk, str(order.state))
    if fills:
        if stored_orders is None:
            order_pks = _stored_orders(run_id=run_id, order_ids={f.order_id for f in fills}, column="id")
        else:
            order_pks = {f.order_id: stored_orders[f.order_id][0] for f in fills}
        rows_copy(
            model=Fill,
            fields=["run", "order", "execution_id", "time", "symbol", "asset_type", "side", "quantity", "price", "commission"],
            rows=[
                (run_id, order_pks[f.order_id], f.execution_id, f.time, f.symbol, f.asset_type, f.side, f.quantity, f.price, f.commission)
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
    if equity is not None and len(equity):
        equity_append(run_id=run_id, times=equity.times, portfolio_values=equity.values, cash_values=equity.cash)
    return change


def _packed(values: np.ndarray, dtype: str) -> bytes:
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


@transaction.atomic
def equity_append(*, run_id: int, times: np.ndarray, portfolio_values: np.ndarray, cash_values: np.ndarray) -> int:
    """Append equity points (int64 ns UTC times, oldest first, all after the stored ones) to the
    run's curve: the last chunk is topped up to EquityChunk.CAPACITY, then new chunks follow.
    Returns the number of points stored."""
    times = np.asarray(times, dtype=np.int64)
    portfolio_values = np.asarray(portfolio_values, dtype=np.float64)
    cash_values = np.asarray(cash_values, dtype=np.float64)
    if not (len(times) == len(portfolio_values) == len(cash_values)):
        raise ValueError("times, portfolio_values and cash_values must be the same length")
    appended = len(times)
    if not appended:
        return 0
    if appended > 1 and not np.all(np.diff(times) > 0):
        raise ValueError("equity times must be strictly increasing")
    last = (
        EquityChunk.objects.select_for_update().filter(run_id=run_id).order_by("-sequence").only("sequence", "points", "last_time").first()
    )
    sequence = 0
    if last is not None:
        if times[0] // 1000 <= (last.last_time - EPOCH) // timedelta(microseconds=1):
            raise ValueError(f"equity point at {_utc(times[0]).isoformat()} is not after the last stored one ({last.last_time.isoformat()})")
        sequence = last.sequence
        if last.points < EquityChunk.TOP_UP_BELOW:  # top up a small last chunk: rewrite it with the new points
            stored = EquityChunk.objects.filter(pk=last.pk).values_list("times", "portfolio_values", "cash_values").get()
            times = np.concatenate([np.frombuffer(bytes(stored[0]), dtype="<i8"), times])
            portfolio_values = np.concatenate([np.frombuffer(bytes(stored[1]), dtype="<f8"), portfolio_values])
            cash_values = np.concatenate([np.frombuffer(bytes(stored[2]), dtype="<f8"), cash_values])
            last.delete()
        else:
            sequence += 1
    rows = []
    for offset in range(0, len(times), EquityChunk.CAPACITY):
        piece = slice(offset, offset + EquityChunk.CAPACITY)
        chunk_times, chunk_values = times[piece], portfolio_values[piece]
        chart_times, chart_values = downsample(chunk_times, chunk_values, EquityChunk.CHART_POINTS)
        rows.append((
            run_id, sequence, _utc(chunk_times[0]), _utc(chunk_times[-1]), len(chunk_times), _packed(chunk_times, "<i8"),
            _packed(chunk_values, "<f8"), _packed(cash_values[piece], "<f8"), _packed(chart_times, "<i8"), _packed(chart_values, "<f8"),
        ))
        sequence += 1
    # COPY sends the arrays as they are (an INSERT would spell each megabyte out in hex).
    rows_copy(
        model=EquityChunk,
        fields=["run", "sequence", "first_time", "last_time", "points", "times", "portfolio_values", "cash_values", "chart_times", "chart_values"],
        rows=rows,
    )
    return appended


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(nanoseconds) -> datetime:
    return EPOCH + timedelta(microseconds=int(nanoseconds) // 1000)
