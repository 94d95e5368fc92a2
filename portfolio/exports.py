"""The EMS orders CSV of a run (product.md §10): one row per order, in creation order, streamed."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

from portfolio.models import Order

ORDER_COLUMNS = (
    "order_id", "client_order_id", "run_id", "created_at", "updated_at", "symbol", "asset_type", "intent", "side",
    "order_type", "time_in_force", "quantity", "limit_price", "stop_price", "state", "filled_quantity",
    "average_fill_price", "commission", "reject_reason", "broker_order_id", "tag",
)
# A spreadsheet evaluates a cell starting with these as a formula (CSV injection); tab and
# carriage return are in OWASP's list too, since some programs strip them first.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CHUNK_ROWS = 2000


def spreadsheet_safe(text: str) -> str:
    """Text a spreadsheet would execute, made inert by a leading apostrophe."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(value: Decimal | None) -> str:
    # Plain notation without the column's padding zeros: 10, 62.5, 0.0001 (never 1E-4).
    return "" if value is None else format(value.normalize(), "f")


def order_csv_row(order: Order) -> list[str]:
    return [
        str(order.order_id),
        spreadsheet_safe(order.client_order_id),
        str(order.run_id),
        _time(order.created_at),
        _time(order.updated_at),
        spreadsheet_safe(order.symbol),
        spreadsheet_safe(order.asset_type),
        spreadsheet_safe(order.intent),
        spreadsheet_safe(order.side),
        spreadsheet_safe(order.order_type),
        spreadsheet_safe(order.time_in_force),
        _number(order.quantity),
        _number(order.limit_price),
        _number(order.stop_price),
        spreadsheet_safe(order.state),
        _number(order.filled_quantity),
        _number(order.average_fill_price),
        _number(order.commission),
        spreadsheet_safe(order.reject_reason),
        spreadsheet_safe(order.broker_order_id),
        spreadsheet_safe(order.tag),
    ]


class _Line:
    """csv.writer's file: hands back each written line instead of storing it."""

    def write(self, line: str) -> str:
        return line


def orders_csv_lines(*, run_id: int) -> Iterator[str]:
    """The header, then one CSV line per order of the run in creation order, read in chunks so
    a run with a million orders streams in constant memory."""
    writer = csv.writer(_Line(), lineterminator="\r\n")
    yield writer.writerow(ORDER_COLUMNS)
    orders = Order.objects.filter(run_id=run_id).order_by("order_id")
    for order in orders.iterator(chunk_size=CHUNK_ROWS):
        yield writer.writerow(order_csv_row(order))
