from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from runs.models import Run, RunEvent, Study


class RunEventInline(admin.TabularInline):
    model = RunEvent
    extra = 0
    can_delete = False
    readonly_fields = ["kind", "at", "actor", "note"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "description", "strategy_version", "mode", "status", "progress", "pnl", "created_by", "created_at"]
    list_filter = ["status", "mode", "strategy_version__strategy"]
    search_fields = ["description", "strategy_version__strategy__name"]
    list_select_related = ["strategy_version__strategy", "created_by"]
    raw_id_fields = ["strategy_version", "copied_from", "created_by"]
    readonly_fields = [
        "created_at", "start_requested_at", "started_at", "kill_requested_at", "finished_at", "heartbeat_at",
        "progress", "bars_processed", "portfolio_value", "pnl", "metrics", "related_records",
    ]
    inlines = [RunEventInline]

    @admin.display(description="Recorded results")
    def related_records(self, run):
        links = [
            ("portfolio", "order", "orders", run.orders.count()),
            ("portfolio", "fill", "fills", run.fills.count()),
            ("portfolio", "position", "positions", run.positions.count()),
            ("portfolio", "ledgerentry", "ledger entries", run.ledger_entries.count()),
            ("issues", "issue", "issues", run.issues.count()),
            ("issues", "logentry", "log lines", run.log_entries.count()),
        ]
        return format_html(
            " · ".join(['<a href="{}?run__id__exact={}">{} {}</a>'] * len(links)),
            *[part for app, model, label, count in links for part in (reverse(f"admin:{app}_{model}_changelist"), run.pk, count, label)],
        )


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["id", "description", "strategy_version", "search_mode", "status", "trial_count", "objective_metric", "created_by", "created_at"]
    list_filter = ["status", "search_mode"]
    search_fields = ["description", "strategy_version__strategy__name"]
    list_select_related = ["strategy_version__strategy", "created_by"]
    raw_id_fields = ["base_run", "strategy_version", "created_by"]
    readonly_fields = ["status", "trial_count", "created_at", "started_at", "kill_requested_at", "finished_at"]
