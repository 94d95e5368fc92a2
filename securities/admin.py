from django.contrib import admin

from config.admin import ReadOnlyAdmin
from securities.models import Bar, BarBlock, BarImport, Security


@admin.register(Security)
class SecurityAdmin(admin.ModelAdmin):
    list_display = ("symbol", "name", "asset_type", "exchange", "currency", "tick_size", "multiplier", "active")
    list_filter = ("asset_type", "exchange", "active")
    search_fields = ("symbol", "name", "isin")
    ordering = ("symbol", "asset_type")

    def save_model(self, request, obj, form, change):
        # Lookups compare upper-case symbols; keep hand-made rows in that form too.
        obj.symbol = obj.symbol.strip().upper()
        super().save_model(request, obj, form, change)


@admin.register(Bar)
class BarAdmin(admin.ModelAdmin):
    list_display = ("security", "frequency", "time", "open", "high", "low", "close", "volume")
    list_filter = ("frequency",)
    search_fields = ("security__symbol",)
    list_select_related = ("security",)
    raw_id_fields = ("security",)
    # Counting millions of bars on every page is the slow part of a changelist.
    show_full_result_count = False


@admin.register(BarImport)
class BarImportAdmin(ReadOnlyAdmin):
    """Provenance of stored bars: written by the import services, never edited by hand."""

    list_display = (
        "imported_at",
        "security",
        "frequency",
        "source",
        "synthetic",
        "rows_imported",
        "rows_rejected",
        "first_time",
        "last_time",
        "imported_by",
    )
    list_filter = ("synthetic", "frequency")
    search_fields = ("security__symbol", "source")
    list_select_related = ("security", "imported_by")


@admin.register(BarBlock)
class BarBlockAdmin(ReadOnlyAdmin):
    """The packed bar cache `bars_as_arrays` fills on PostgreSQL: shown so an operator can see it,
    never edited (a bar change makes a block stale by itself)."""

    list_display = ("security", "frequency", "period_start", "points", "revision")
    list_filter = ("frequency",)
    search_fields = ("security__symbol",)
    list_select_related = ("security",)
    ordering = ("security", "frequency", "period_start")

    def get_queryset(self, request):
        # A block's columns are megabytes: pages list the headers only.
        return super().get_queryset(request).defer("times", "open", "high", "low", "close", "volume")
