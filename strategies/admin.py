from django.contrib import admin
from django.utils.html import format_html_join

from config.admin import ReadOnlyAdmin
from strategies.models import Strategy, StrategyVersion
from strategies.services import strategy_create


def _files_as_html(files: dict) -> str:
    return format_html_join("", "<h3>{}</h3><pre style='white-space: pre-wrap'>{}</pre>", sorted((files or {}).items()))


class StrategyVersionInline(admin.TabularInline):
    model = StrategyVersion
    fields = ["number", "message", "published_by", "published_at", "content_hash"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Strategy)
class StrategyAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "updated_at"]
    search_fields = ["name"]
    # The files change through the editor, where they are checked, not through the admin.
    readonly_fields = ["working_copy", "created_at", "updated_at"]
    fields = ["name", "description", "owner", "working_copy", "created_at", "updated_at"]
    inlines = [StrategyVersionInline]

    @admin.display(description="Working copy")
    def working_copy(self, obj):
        return _files_as_html(obj.files)

    def get_readonly_fields(self, request, obj=None):
        # A new strategy belongs to whoever creates it (strategy_create checks their role).
        return self.readonly_fields if obj is not None else [*self.readonly_fields, "owner"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        created = strategy_create(name=obj.name, description=obj.description, owner=request.user)
        obj.pk, obj.owner, obj.files = created.pk, created.owner, created.files
        obj.created_at, obj.updated_at = created.created_at, created.updated_at
        obj._state.adding = False


@admin.register(StrategyVersion)
class StrategyVersionAdmin(ReadOnlyAdmin):
    """Published versions are immutable: viewable, never added, changed or deleted here."""

    list_display = ["strategy", "number", "published_by", "published_at", "hash_prefix"]
    list_filter = ["strategy"]
    list_select_related = ["strategy", "published_by"]
    fields = ["strategy", "number", "message", "published_by", "published_at", "content_hash", "files_display", "config_schema"]
    readonly_fields = fields

    @admin.display(description="content hash")
    def hash_prefix(self, obj):
        return obj.content_hash[:12]

    @admin.display(description="files")
    def files_display(self, obj):
        return _files_as_html(obj.files)
