"""The ledger is a record of what happened: read-only in the admin."""

from django.contrib import admin

from portfolio.models import EquityPoint, Fill, LedgerEntry, Order, Position


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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


@admin.register(EquityPoint)
class EquityPointAdmin(ReadOnlyAdmin):
    list_display = ["run", "time", "cash", "portfolio_value"]
    list_select_related = ["run"]
