"""The ledger is a record of what happened: read-only in the admin."""

import os

from django.contrib import admin

from config.admin import ReadOnlyAdmin
from portfolio.models import BrokerAccount, EquityChunk, Fill, LedgerEntry, LiveRunState, Order, Position


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["run", "order_id", "symbol", "intent", "order_type", "quantity", "state", "filled_quantity", "average_fill_price", "created_at"]
    list_filter = ["state", "order_type", "intent"]
    search_fields = ["symbol", "client_order_id", "tag"]
    list_select_related = ["run"]


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = ["run", "order", "time", "symbol", "side", "quantity", "price", "commission"]
    list_filter = ["side"]
    search_fields = ["symbol", "execution_id"]
    list_select_related = ["run", "order"]


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ["run", "symbol", "asset_type", "quantity", "average_price", "last_price", "market_value", "unrealized_pnl", "realized_pnl"]
    search_fields = ["symbol"]
    list_select_related = ["run"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["run", "time", "kind", "amount", "balance", "order_id", "description"]
    list_filter = ["kind"]
    list_select_related = ["run"]


@admin.register(EquityChunk)
class EquityChunkAdmin(ReadOnlyAdmin):
    list_display = ["run", "sequence", "first_time", "last_time", "points"]
    fields = ["run", "sequence", "first_time", "last_time", "points"]  # the packed columns are not for reading here
    list_select_related = ["run"]


@admin.register(BrokerAccount)
class BrokerAccountAdmin(admin.ModelAdmin):
    """Accounts are configuration (editable); their secrets live in the worker's environment,
    so only the variables' names are shown, and whether this process can see them."""

    list_display = ["name", "broker", "endpoint", "enabled", "key_id_env", "key_id_set", "secret_env", "secret_set", "updated_at"]
    list_filter = ["broker", "endpoint", "enabled"]
    search_fields = ["name"]
    readonly_fields = ["key_id_set", "secret_set", "created_at", "updated_at"]
    fields = [
        "name", "broker", "endpoint", "enabled", "key_id_env", "key_id_set", "secret_env", "secret_set", "data_feed",
        "trading_url", "trading_stream_url", "data_url", "data_stream_url", "created_at", "updated_at",
    ]

    @admin.display(boolean=True, description="key id set here")
    def key_id_set(self, account):
        return bool(account.key_id_env and os.environ.get(account.key_id_env))

    @admin.display(boolean=True, description="secret set here")
    def secret_set(self, account):
        return bool(account.secret_env and os.environ.get(account.secret_env))


@admin.register(LiveRunState)
class LiveRunStateAdmin(ReadOnlyAdmin):
    list_display = ["run", "account", "resumes", "reconciled_at", "cash", "equity", "buying_power"]
    list_select_related = ["run", "account"]
