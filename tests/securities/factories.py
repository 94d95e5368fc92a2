"""Security-master and market-data factories."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import factory

from securities.models import AssetType, Bar, BarFrequency, BarImport, Security


class SecurityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Security
        django_get_or_create = ("symbol", "asset_type")

    symbol = factory.Sequence(lambda n: f"SYM{n}")
    name = factory.LazyAttribute(lambda security: f"{security.symbol} Incorporated")
    asset_type = AssetType.EQUITY
    exchange = "NASDAQ"
    currency = "USD"
    tick_size = Decimal("0.01")
    multiplier = Decimal("1")


class FutureFactory(SecurityFactory):
    asset_type = AssetType.FUTURE
    exchange = "CME"
    tick_size = Decimal("0.25")
    multiplier = Decimal("50")


class BarFactory(factory.django.DjangoModelFactory):
    """Consecutive minute bars from 2017-11-10 14:30 UTC, each 0.10 above the one before."""

    class Meta:
        model = Bar

    security = factory.SubFactory(SecurityFactory)
    frequency = BarFrequency.MINUTE
    time = factory.Sequence(lambda n: datetime(2017, 11, 10, 14, 30, tzinfo=UTC) + timedelta(minutes=n))
    open = factory.Sequence(lambda n: Decimal("100.00") + Decimal("0.10") * n)
    close = factory.LazyAttribute(lambda bar: bar.open + Decimal("0.05"))
    high = factory.LazyAttribute(lambda bar: bar.close + Decimal("0.02"))
    low = factory.LazyAttribute(lambda bar: bar.open - Decimal("0.03"))
    volume = Decimal("1000")


class BarImportFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BarImport

    security = factory.SubFactory(SecurityFactory)
    frequency = BarFrequency.DAY
    source = "MSFT_1d.csv.gz"
