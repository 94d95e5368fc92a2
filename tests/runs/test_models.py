"""Rules the database itself enforces for runs and their ledger (SQLite and PostgreSQL)."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from runs.models import Run
from tests.portfolio.factories import FillFactory, OrderFactory
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db


def assert_refused(fn):
    with pytest.raises(IntegrityError), transaction.atomic():
        fn()


def test_status_mode_and_progress_are_checked_by_the_database():
    run = RunFactory()
    assert_refused(lambda: Run.objects.filter(pk=run.pk).update(status="paused"))
    assert_refused(lambda: Run.objects.filter(pk=run.pk).update(mode="simulation"))
    assert_refused(lambda: Run.objects.filter(pk=run.pk).update(progress=101))


def test_order_ids_are_unique_per_run_but_repeat_across_runs():
    first, second = RunFactory(), RunFactory()
    OrderFactory(run=first, order_id=1)
    OrderFactory(run=second, order_id=1)
    assert_refused(lambda: OrderFactory(run=first, order_id=1, client_order_id="other"))


def test_an_order_can_never_be_filled_beyond_its_quantity():
    run = RunFactory()
    assert_refused(lambda: OrderFactory(run=run, quantity=Decimal("5"), filled_quantity=Decimal("6")))


def test_execution_ids_are_unique_per_run():
    order = OrderFactory(run=RunFactory())
    FillFactory(order=order, execution_id="e1")
    assert_refused(lambda: FillFactory(order=order, execution_id="e1"))


def test_a_strategy_version_with_runs_cannot_be_deleted():
    from django.db.models import ProtectedError

    run = RunFactory()
    with pytest.raises(ProtectedError):
        run.strategy_version.delete()
