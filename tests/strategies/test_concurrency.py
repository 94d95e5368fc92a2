"""Simultaneous publishes of one strategy, on PostgreSQL (SQLite serialises writers for the
whole file, so there is no race to show there)."""

import threading

import pytest
from django.db import connection, connections

from strategies.bundle import NothingChanged
from strategies.models import StrategyVersion
from strategies.services import strategy_publish
from tests.strategies.factories import AuthorFactory, StrategyFactory, bundle_files

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture(autouse=True)
def needs_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (set DATABASE_URL)")


def race(*callables):
    barrier = threading.Barrier(len(callables))
    results, errors = [None] * len(callables), [None] * len(callables)

    def worker(index, function):
        try:
            barrier.wait()
            results[index] = function()
        except Exception as exc:  # collected for the assertions
            errors[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(index, function)) for index, function in enumerate(callables)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results, errors


def test_simultaneous_publishes_are_serialised_by_the_row_lock():
    author = AuthorFactory()
    strategy = StrategyFactory(files=bundle_files("crossover_a"))
    publishes = [lambda: strategy_publish(strategy=strategy, user=author) for _ in range(4)]
    results, errors = race(*publishes)
    # One wins v1; each other waits for the lock, then sees v1 and finds nothing new. Without
    # the lock they would all try v1 and lose on the unique constraint instead.
    assert [version.number for version in results if version is not None] == [1]
    assert sum(isinstance(error, NothingChanged) for error in errors) == 3
    assert list(StrategyVersion.objects.filter(strategy=strategy).values_list("number", flat=True)) == [1]
