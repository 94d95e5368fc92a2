"""Factories for the API tests: users with a console role, and a run's issues and log lines."""

from datetime import UTC, datetime

import factory

from issues.models import Issue, LogEntry
from tests.conftest import role_group
from tests.strategies.factories import UserFactory

T0 = datetime(2017, 1, 3, 14, 30, tzinfo=UTC)


class RoleUserFactory(UserFactory):
    """A user in one of the role groups of migration runs/0002: `RoleUserFactory(role="Operator")`."""

    class Meta:
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"member{n}")

    @factory.post_generation
    def role(user, create, extracted, **kwargs):
        if create and extracted:
            user.groups.add(role_group(extracted))


class IssueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Issue

    run = None
    code = "order_rejected"
    component = "strategy"
    classification = "user"
    severity = "warning"
    fingerprint = factory.Sequence(lambda n: f"fp{n}")
    message = factory.Sequence(lambda n: f"issue {n}")
    first_seen = T0
    last_seen = T0


class LogEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LogEntry

    run = None
    sequence = factory.Sequence(lambda n: n + 1)
    time = T0
    level = "INFO"
    message = factory.LazyAttribute(lambda entry: f"line {entry.sequence}")
