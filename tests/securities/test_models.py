from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from securities.models import Bar, Security
from tests.securities.factories import BarFactory, FutureFactory, SecurityFactory

pytestmark = pytest.mark.django_db


def test_symbol_and_asset_type_are_unique():
    SecurityFactory(symbol="MSFT", asset_type="equity")
    with pytest.raises(IntegrityError), transaction.atomic():
        Security.objects.create(symbol="MSFT", name="Microsoft again", asset_type="equity")


def test_the_same_symbol_may_exist_under_two_asset_types():
    SecurityFactory(symbol="ES", name="Eversource Energy")
    FutureFactory(symbol="ES", name="E-mini S&P 500")
    assert sorted(Security.objects.filter(symbol="ES").values_list("asset_type", "name")) == [
        ("equity", "Eversource Energy"),
        ("future", "E-mini S&P 500"),
    ]


def test_a_bar_time_is_unique_per_security_and_frequency():
    bar = BarFactory()
    BarFactory(security=bar.security, frequency="day", time=bar.time)  # another frequency is fine
    with pytest.raises(IntegrityError), transaction.atomic():
        BarFactory(security=bar.security, frequency=bar.frequency, time=bar.time)


@pytest.mark.parametrize(
    "prices",
    [
        {"open": "10", "high": "9.5", "low": "9", "close": "9.2"},  # high below open
        {"open": "10", "high": "11", "low": "10.5", "close": "10.8"},  # low above open
        {"open": "10", "high": "11", "low": "0", "close": "10"},  # low not positive
        {"open": "10", "high": "11", "low": "9", "close": "10", "volume": "-1"},  # negative volume
    ],
)
def test_the_database_refuses_inconsistent_bars(prices):
    security = SecurityFactory()
    values = {name: Decimal(value) for name, value in prices.items()}
    with pytest.raises(IntegrityError), transaction.atomic():
        Bar.objects.create(
            security=security, frequency="day", time=datetime(2017, 11, 10, 14, 30, tzinfo=UTC), **values
        )
