import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from strategies.models import ImmutableVersionError, StrategyVersion
from tests.strategies.factories import StrategyFactory, StrategyVersionFactory

pytestmark = pytest.mark.django_db


def test_save_refuses_to_change_a_published_version():
    version = StrategyVersionFactory()
    version.message = "rewritten"
    with pytest.raises(ImmutableVersionError, match="publish a new version instead"):
        version.save()
    assert StrategyVersion.objects.get(pk=version.pk).message == ""


def test_the_database_refuses_an_update_whatever_the_code_path():
    version = StrategyVersionFactory()
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        StrategyVersion.objects.filter(pk=version.pk).update(message="x")
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {StrategyVersion._meta.db_table} SET files = '{{}}' WHERE id = %s", [version.pk])
    stored = StrategyVersion.objects.get(pk=version.pk)
    assert stored.message == "" and "strategy.py" in stored.files


def test_two_versions_cannot_share_a_number():
    strategy = StrategyFactory()
    StrategyVersionFactory(strategy=strategy, number=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        StrategyVersionFactory(strategy=strategy, number=1)
    assert StrategyVersionFactory(strategy=strategy).number == 2


def test_version_numbers_start_at_one():
    with pytest.raises(IntegrityError), transaction.atomic():
        StrategyVersionFactory(number=0)
