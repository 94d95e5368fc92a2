from datetime import UTC, datetime
from decimal import Decimal

import factory

from portfolio.models import EquityPoint, Fill, LedgerEntry, Order, Position

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


class EquityPointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EquityPoint

    run = None
    time = T0
    cash = Decimal("100000")
    portfolio_value = Decimal("100000")
