"""Writing strategies: create, save the working copy, publish an immutable version.

Every write needs the Strategy author role (`strategies.author_strategy`); `user=None` is the
system itself (management commands, the demo seed). Refusals are audited before anything else
happens, outside the transaction, so they are kept.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from issues.services import audit_record
from strategies.bundle import (
    SCHEMA_FILE,
    STRATEGY_FILE,
    BundleError,
    BundleInvalid,
    NothingChanged,
    PublishError,
    bundle_content_hash,
    bundle_files_check,
    bundle_read_folder,
    module_docstring,
)
from strategies.import_check import bundle_import_check
from strategies.loader import StrategyLoadError, bundle_compile
from strategies.models import Strategy, StrategyVersion
from strategies.schema import schema_check

AUTHOR_PERMISSION = "strategies.author_strategy"
MESSAGE_MAX_LENGTH = StrategyVersion._meta.get_field("message").max_length
NAME_MAX_LENGTH = Strategy._meta.get_field("name").max_length

STARTER_STRATEGY = '''"""Buy and hold: on the first bar, buy as much of the symbol as the cash allows, then hold."""

from strategies.sdk import AssetType, Intent, PlaceOrder, StrategyBase, Subscribe


class Strategy(StrategyBase):
    def on_start(self, now):
        self.invested = False
        return [Subscribe(self.config["symbol"], AssetType.EQUITY, self.config["frequency"])]

    def on_bar(self, event):
        if self.invested:
            return None
        self.invested = True
        self.ctx.log.info("buying %s with all the cash", event.symbol)
        return [PlaceOrder(event.symbol, Intent.BUY, notional=self.ctx.cash)]
'''
STARTER_SCHEMA = (
    json.dumps(
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "symbol": {
                    "type": "string",
                    "title": "Symbol",
                    "description": "What to buy and hold.",
                    "x-lookout-type": "symbol",
                    "x-lookout-asset-type": "EQUITY",
                    "default": "MSFT",
                },
                "frequency": {"type": "string", "title": "Bar frequency", "x-lookout-type": "bar_frequency", "const": "day"},
            },
            "required": ["symbol"],
        },
        indent=2,
    )
    + "\n"
)
STARTER_FILES = {STRATEGY_FILE: STARTER_STRATEGY, SCHEMA_FILE: STARTER_SCHEMA}


def _authorize(*, user, action: str, strategy: Strategy | None = None) -> None:
    if user is None or (user.is_active and user.has_perm(AUTHOR_PERMISSION)):
        return
    audit_record(actor=user, action=action, object_type="strategy", object_id=strategy.pk if strategy else "", allowed=False)
    raise PermissionDenied("You need the Strategy author role to edit and publish strategies.")


def _label(strategy: Strategy, suffix: str) -> str:
    return f"{slugify(strategy.name) or f'strategy-{strategy.pk}'}@{suffix}"


def bundle_validate(*, files: dict, label: str) -> dict:
    """Everything publish checks, without storing anything: the file rules, the schema, that
    every module compiles, and that strategy.py imports in isolation and defines a usable
    Strategy. Returns the parsed schema; raises PublishError listing every problem found."""
    errors = bundle_files_check(files)
    if not isinstance(files, dict):
        raise PublishError(errors)
    schema = None
    if SCHEMA_FILE not in files:
        errors.append(BundleError(SCHEMA_FILE, None, 'the bundle has no config_schema.json: add one, e.g. {"type": "object", "properties": {}}'))
    elif isinstance(files[SCHEMA_FILE], str):
        schema, schema_errors = schema_check(files[SCHEMA_FILE])
        errors.extend(schema_errors)
    texts = {name: source for name, source in files.items() if isinstance(name, str) and isinstance(source, str)}
    try:
        bundle_compile(files=texts, label=label)
    except StrategyLoadError as exc:
        errors.extend(exc.errors)
    if not errors:
        # Module-level code runs, so only for a bundle that is otherwise sound, and in a child
        # process with a time and memory limit: it is the author's code.
        errors.extend(bundle_import_check(files=texts, label=label, timeout_seconds=settings.STRATEGY_IMPORT_TIMEOUT_SECONDS))
    if errors:
        raise PublishError(errors)
    return schema


def strategy_create(*, name: str, description: str = "", owner, files: dict[str, str] | None = None) -> Strategy:
    """A new strategy owned by `owner`. Without files it starts from a buy-and-hold that
    publishes and runs as it is."""
    _authorize(user=owner, action="strategy.create")
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "a strategy needs a name: enter one"})
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationError({"name": f"the name is {len(name)} characters; at most {NAME_MAX_LENGTH}: shorten it"})
    if Strategy.objects.filter(name__iexact=name).exists():
        raise ValidationError({"name": f'a strategy named "{name}" already exists: choose another name'})
    files = dict(STARTER_FILES if files is None else files)
    errors = bundle_files_check(files)
    if errors:
        raise BundleInvalid(errors)
    with transaction.atomic():
        strategy = Strategy.objects.create(name=name, description=description or "", owner=owner, files=files)
        audit_record(actor=owner, action="strategy.create", object_type="strategy", object_id=strategy.pk, allowed=True, detail={"name": name})
    return strategy


def strategy_update_files(*, strategy: Strategy, files: dict[str, str], user) -> Strategy:
    """Save the working copy. Names, kinds and sizes are checked; the code is checked at publish."""
    _authorize(user=user, action="strategy.save", strategy=strategy)
    errors = bundle_files_check(files)
    if errors:
        raise BundleInvalid(errors)
    with transaction.atomic():
        strategy.files = dict(files)
        strategy.save(update_fields=["files", "updated_at"])
        audit_record(actor=user, action="strategy.save", object_type="strategy", object_id=strategy.pk, allowed=True, detail={"files": sorted(files)})
    return strategy


def strategy_publish(*, strategy: Strategy, user, message: str = "") -> StrategyVersion:
    """Publish the saved working copy as the next version, after checking all of it.

    Raises PublishError listing every problem (file, line, fix), or NothingChanged when the
    files are identical to the latest version's.
    """
    _authorize(user=user, action="strategy.publish", strategy=strategy)
    message = (message or "").strip()
    if len(message) > MESSAGE_MAX_LENGTH:
        raise PublishError([BundleError(None, None, f"the message is {len(message)} characters; at most {MESSAGE_MAX_LENGTH}: shorten it")])
    with transaction.atomic():
        # The row lock serialises publishes of one strategy, so version numbers never collide.
        locked = Strategy.objects.select_for_update().get(pk=strategy.pk)
        files = locked.files
        latest = locked.versions.order_by("-number").first()
        content_hash = bundle_content_hash(files) if isinstance(files, dict) else ""
        if latest is not None and latest.content_hash == content_hash:
            raise NothingChanged(latest)
        number = latest.number + 1 if latest else 1
        schema = bundle_validate(files=files, label=_label(locked, str(number)))
        try:
            with transaction.atomic():
                version = StrategyVersion.objects.create(
                    strategy=locked,
                    number=number,
                    files=dict(sorted(files.items())),
                    config_schema=schema,
                    content_hash=content_hash,
                    message=message,
                    published_by=user,
                )
        except IntegrityError:
            # Backstop for a database without row locks (SQLite): the unique constraint refused.
            raise PublishError([BundleError(None, None, f"v{number} was published by someone else at the same moment: publish again")]) from None
        locked.save(update_fields=["updated_at"])
        audit_record(
            actor=user,
            action="strategy.publish",
            object_type="strategy",
            object_id=locked.pk,
            allowed=True,
            detail={"version": number, "content_hash": content_hash},
        )
    return version


def strategy_publish_folder(
    *, folder: Path, name: str | None = None, user=None, description: str | None = None, message: str = ""
) -> StrategyVersion:
    """Publish a folder (strategy.py, config_schema.json, *.py helpers) as the next version of
    the strategy called `name` (default: the folder name, title-cased), creating it if needed.
    The description defaults to strategy.py's module docstring. Nothing is stored on failure."""
    _authorize(user=user, action="strategy.publish")
    folder = Path(folder)
    try:
        files = bundle_read_folder(folder)
        name = name or folder.name.replace("_", " ").replace("-", " ").title()
        if description is None:
            description = module_docstring(files.get(STRATEGY_FILE, ""))
        with transaction.atomic():
            strategy = Strategy.objects.filter(name=name).first()
            if strategy is None:
                strategy = strategy_create(name=name, description=description, owner=user, files=files)
            else:
                if strategy.description != description:
                    strategy.description = description
                    strategy.save(update_fields=["description", "updated_at"])
                strategy_update_files(strategy=strategy, files=files, user=user)
            return strategy_publish(strategy=strategy, user=user, message=message)
    except PublishError:
        raise
    except BundleInvalid as exc:
        raise PublishError(exc.errors) from exc
