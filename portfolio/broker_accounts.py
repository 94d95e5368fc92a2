"""Broker accounts (reads): which accounts Live runs may use, and their credentials, read from
the environment variables the account names. Secrets are returned to the caller that connects
to the broker and to nobody else: never stored, logged or shown."""

from __future__ import annotations

import os

from portfolio.models import BrokerAccount


class CredentialsMissing(Exception):
    """The account's environment variables are not set in this process."""


def broker_accounts_enabled() -> list[BrokerAccount]:
    return list(BrokerAccount.objects.filter(enabled=True).order_by("name"))


def broker_account_problem(*, name: str) -> str | None:
    """Why `name` cannot be used by a Live run, in words that say how to fix it; None if it can."""
    account = BrokerAccount.objects.filter(name=name).first()
    enabled = [a.name for a in broker_accounts_enabled()]
    choices = f"choose one of: {', '.join(enabled)}" if enabled else "an admin adds one under Portfolio › Broker accounts"
    if account is None:
        return f"there is no broker account named '{name}': {choices}"
    if not account.enabled:
        return f"the broker account '{name}' is disabled: {choices}, or ask an admin to enable it"
    return None


def broker_credentials(*, account: BrokerAccount) -> tuple[str, str]:
    """(key id, secret) from the environment variables named by the account."""
    key_id = os.environ.get(account.key_id_env, "")
    secret = os.environ.get(account.secret_env, "")
    missing = [name for name, value in ((account.key_id_env, key_id), (account.secret_env, secret)) if not value]
    if missing:
        raise CredentialsMissing(
            f"the broker account '{account.name}' reads its credentials from {' and '.join(missing)}, "
            "which are not set in the worker's environment: set them where the worker runs and restart it"
        )
    return key_id, secret
