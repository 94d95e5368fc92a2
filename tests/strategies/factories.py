"""Strategy and StrategyVersion factories. A StrategyVersion is, by default, the buy-and-hold
bundle of tests/strategies/bundles/buy_and_hold: parameters `symbol` (EQUITY, default MSFT) and
`frequency` (pinned to day). Pass `files=` to publish other code; the schema and hash follow."""

from pathlib import Path

import factory
from django.contrib.auth.models import Permission
from django.db.models import Max

from strategies.bundle import SCHEMA_FILE, bundle_content_hash, bundle_read_folder
from strategies.models import Strategy, StrategyVersion
from strategies.schema import schema_check

BUNDLES = Path(__file__).resolve().parent / "bundles"


def bundle_files(name: str) -> dict[str, str]:
    """The files of a test bundle folder under tests/strategies/bundles."""
    return bundle_read_folder(BUNDLES / name)


def _parsed_schema(files: dict[str, str]) -> dict:
    schema, errors = schema_check(files[SCHEMA_FILE])
    assert not errors, errors
    return schema


def _next_number(version) -> int:
    if version.strategy.pk is None:
        return 1
    return (version.strategy.versions.aggregate(highest=Max("number"))["highest"] or 0) + 1


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "auth.User"

    username = factory.Sequence(lambda n: f"user{n}")
    password = "!"  # unusable: these users never log in, and hashing a real one is slow


class AuthorFactory(UserFactory):
    """A user with the Strategy author role's permission."""

    class Meta:
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"author{n}")

    @factory.post_generation
    def author_permission(user, create, extracted, **kwargs):
        if create:
            user.user_permissions.add(Permission.objects.get(content_type__app_label="strategies", codename="author_strategy"))


class StrategyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Strategy

    name = factory.Sequence(lambda n: f"Strategy {n}")
    description = "A test strategy."
    files = factory.LazyFunction(lambda: bundle_files("buy_and_hold"))


class StrategyVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StrategyVersion

    strategy = factory.SubFactory(StrategyFactory)
    number = factory.LazyAttribute(_next_number)
    files = factory.LazyFunction(lambda: bundle_files("buy_and_hold"))
    config_schema = factory.LazyAttribute(lambda version: _parsed_schema(version.files))
    content_hash = factory.LazyAttribute(lambda version: bundle_content_hash(version.files))
    message = ""
