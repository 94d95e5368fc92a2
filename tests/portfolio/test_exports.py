"""The EMS orders CSV (product.md §10). Depends on: the test database and the run/order factories."""

import csv
import io
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from portfolio.exports import ORDER_COLUMNS, orders_csv_lines, spreadsheet_safe
from tests.portfolio.factories import OrderFactory
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db


def read(run) -> list[dict]:
    return list(csv.DictReader(io.StringIO("".join(orders_csv_lines(run_id=run.pk)))))


def test_the_columns_are_exactly_those_of_the_spec():
    header = next(csv.reader(io.StringIO(next(orders_csv_lines(run_id=0)))))
    assert header == [
        "order_id", "client_order_id", "run_id", "created_at", "updated_at", "symbol", "asset_type", "intent", "side",
        "order_type", "time_in_force", "quantity", "limit_price", "stop_price", "state", "filled_quantity",
        "average_fill_price", "commission", "reject_reason", "broker_order_id", "tag",
    ]
    assert list(ORDER_COLUMNS) == header


def test_one_row_per_order_in_creation_order_with_utc_iso_times_and_plain_numbers():
    run = RunFactory()
    other = RunFactory()
    eastern = timezone(timedelta(hours=-5))
    OrderFactory(run=run, order_id=3, client_order_id="r-3", created_at=datetime(2017, 1, 4, 9, 30, tzinfo=eastern),
                 updated_at=datetime(2017, 1, 4, 9, 31, tzinfo=eastern), order_type="limit", limit_price=Decimal("61.25"),
                 state="working", filled_quantity=Decimal("0"), average_fill_price=None)
    OrderFactory(run=run, order_id=1, client_order_id="r-1", quantity=Decimal("10.5"), filled_quantity=Decimal("10.5"),
                 commission=Decimal("1.00"))
    OrderFactory(run=run, order_id=2, client_order_id="r-2", quantity=None, notional=Decimal("1000"), filled_quantity=Decimal("0"),
                 state="rejected", reject_reason="insufficient buying power", average_fill_price=None)
    OrderFactory(run=other, order_id=1, client_order_id="other")
    rows = read(run)
    assert [row["order_id"] for row in rows] == ["1", "2", "3"]
    assert {row["run_id"] for row in rows} == {str(run.pk)}
    first, second, third = rows
    assert first["created_at"] == "2017-01-03T14:30:00Z"
    assert third["created_at"] == "2017-01-04T14:30:00Z" and third["updated_at"] == "2017-01-04T14:31:00Z"
    assert first["quantity"] == "10.5" and first["filled_quantity"] == "10.5" and first["commission"] == "1"
    assert first["average_fill_price"] == "62.5" and first["limit_price"] == ""
    assert second["quantity"] == "" and second["reject_reason"] == "insufficient buying power"
    assert third["limit_price"] == "61.25" and third["state"] == "working"


@pytest.mark.parametrize("text", ["=1+1", "+1", "-2", "@SUM(A1)", "\t=1", "\r=1"])
def test_text_a_spreadsheet_would_execute_is_neutralised(text):
    assert spreadsheet_safe(text) == "'" + text
    run = RunFactory()
    OrderFactory(run=run, tag=text, reject_reason=text, symbol=text[:32], broker_order_id=text)
    row = read(run)[0]
    assert row["tag"] == row["reject_reason"] == row["symbol"] == row["broker_order_id"] == "'" + text


def test_ordinary_text_and_negative_numbers_are_left_alone():
    assert spreadsheet_safe("MSFT") == "MSFT" and spreadsheet_safe("a=b") == "a=b"
    run = RunFactory()
    OrderFactory(run=run, tag="momentum, entry", stop_price=Decimal("-1.5"))
    row = read(run)[0]
    assert row["tag"] == "momentum, entry"  # quoted by the CSV writer, not altered
    assert row["stop_price"] == "-1.5"  # a number, not text: kept as is


def test_the_export_streams_in_chunks_without_loading_every_order(django_assert_max_num_queries):
    run = RunFactory()
    OrderFactory.create_batch(5, run=run)
    lines = orders_csv_lines(run_id=run.pk)
    assert next(lines).startswith("order_id,")
    with django_assert_max_num_queries(1):
        rest = list(lines)
    assert len(rest) == 5 and all(line.endswith("\r\n") for line in rest)
    assert datetime(2017, 1, 3, 14, 30, tzinfo=UTC).isoformat().replace("+00:00", "Z") in rest[0]
