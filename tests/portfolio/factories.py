from datetime import UTC, datetime
from decimal import Decimal

import factory
import numpy as np

from portfolio.models import Fill, LedgerEntry, Order, Position

T0 = datetime(2017, 1, 3, 14, 30, tzinfo=UTC)


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    run = None
    order_id = factory.Sequence(lambda n: n + 1)
    client_order_id = factory.LazyAttribute(lambda o: f"r{o.run.pk}-{o.order_id}")
    symbol = "MSFT"
    asset_type = "equity"
    intent = "buy"
    side = "buy"
    order_type = "market"
    time_in_force = "day"
    quantity = Decimal("10")
    state = "filled"
    filled_quantity = Decimal("10")
    average_fill_price = Decimal("62.5")
    created_at = T0
    updated_at = T0


class FillFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Fill

    order = factory.SubFactory(OrderFactory)
    run = factory.LazyAttribute(lambda f: f.order.run)
    execution_id = factory.Sequence(lambda n: f"x{n}")
    time = T0
    symbol = "MSFT"
    asset_type = "equity"
    side = "buy"
    quantity = Decimal("10")
    price = Decimal("62.5")


class PositionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Position

    run = None
    symbol = "MSFT"
    asset_type = "equity"
    quantity = Decimal("10")
    average_price = Decimal("62.5")
    updated_at = T0


class LedgerEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LedgerEntry

    run = None
    time = T0
    kind = "deposit"
    amount = Decimal("100000")
    balance = Decimal("100000")


def equity_points_store(*, run, times, values, cash=None) -> None:
    """Store equity points (UTC datetimes, values) for a run the way the recorder does."""
    from portfolio.services import equity_append

    nanoseconds = np.array([int(moment.timestamp()) * 10**9 + moment.microsecond * 1000 for moment in times], dtype=np.int64)
    values = np.array([float(value) for value in values])
    equity_append(run_id=run.pk, times=nanoseconds, portfolio_values=values, cash_values=values if cash is None else np.array([float(c) for c in cash]))


def stored_equity(run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run's stored equity curve: (int64 ns times, portfolio values, cash), oldest first."""
    from portfolio.models import EquityChunk

    chunks = list(EquityChunk.objects.filter(run=run).order_by("sequence"))
    if not chunks:
        return np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)
    return tuple(
        np.concatenate([np.frombuffer(bytes(getattr(chunk, column)), dtype=dtype) for chunk in chunks])
        for column, dtype in (("times", "<i8"), ("portfolio_values", "<f8"), ("cash_values", "<f8"))
    )
