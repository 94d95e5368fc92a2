from django.contrib import admin

from config.admin import ReadOnlyAdmin
from issues.models import ApiIdempotencyKey, AuditEvent, Issue, LogEntry


@admin.register(Issue)
class IssueAdmin(admin.ModelAdmin):
    list_display = ["run", "code", "component", "classification", "severity", "message", "count", "last_seen"]
    list_filter = ["code", "component", "classification", "severity"]
    search_fields = ["message", "code"]
    list_select_related = ["run"]
    raw_id_fields = ["run"]


@admin.register(LogEntry)
class LogEntryAdmin(admin.ModelAdmin):
    list_display = ["run", "sequence", "time", "level", "message"]
    list_filter = ["level"]
    search_fields = ["message"]
    list_select_related = ["run"]
    raw_id_fields = ["run"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor", "action", "object_type", "object_id", "allowed"]
    list_filter = ["allowed", "action", "object_type"]
    search_fields = ["action", "object_id", "actor__username"]


@admin.register(ApiIdempotencyKey)
class ApiIdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ["created_at", "user", "key", "method", "path", "response_status"]
    list_filter = ["method", "response_status"]
    search_fields = ["key", "path", "user__username"]
    readonly_fields = ["user", "key", "request_fingerprint", "method", "path", "response_status", "response_body", "created_at"]

    def has_add_permission(self, request):
        return False
