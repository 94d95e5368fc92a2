"""Recording diagnostics, logs and audit events."""

from __future__ import annotations

import hashlib
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from issues.models import AuditEvent, Issue, LogEntry


def audit_record(*, actor, action: str, object_type: str, object_id="", allowed: bool, detail: dict | None = None) -> AuditEvent:
    """Who did what to which object, and whether it was allowed. Refusals are recorded too."""
    if actor is not None and not getattr(actor, "is_authenticated", True):
        actor = None
    return AuditEvent.objects.create(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=str(object_id or ""),
        allowed=allowed,
        detail=detail or {},
    )


def issue_fingerprint(code: str, *parts: str) -> str:
    return hashlib.sha256("\x1f".join((code, *parts)).encode()).hexdigest()[:32]


@transaction.atomic
def issue_record(
    *,
    run_id: int,
    code: str,
    component: str,
    classification: str,
    severity: str,
    message: str,
    detail: str = "",
    fingerprint: str | None = None,
    count: int = 1,
    first_seen: datetime | None = None,
    last_seen: datetime | None = None,
) -> Issue:
    """Add an issue, or count a repeat of one already recorded for this run."""
    now = timezone.now()
    fingerprint = fingerprint or issue_fingerprint(code, message)
    first_seen = first_seen or now
    last_seen = last_seen or now
    issue, created = Issue.objects.select_for_update().get_or_create(
        run_id=run_id,
        fingerprint=fingerprint,
        defaults={
            "code": code,
            "component": component,
            "classification": classification,
            "severity": severity,
            "message": message[:500],
            "detail": detail,
            "count": count,
            "first_seen": first_seen,
            "last_seen": last_seen,
        },
    )
    if not created:
        Issue.objects.filter(pk=issue.pk).update(count=F("count") + count, last_seen=max(last_seen, issue.last_seen), detail=detail or issue.detail)
        issue.refresh_from_db()
    return issue


def log_entries_append(*, run_id: int, entries: list[tuple[int, datetime, str, str]], max_lines: int | None = None) -> None:
    """Append (sequence, time, level, message) lines and drop the oldest beyond `max_lines`."""
    if not entries:
        return
    max_lines = max_lines or settings.RUN_LOG_MAX_LINES
    entries = entries[-max_lines:]
    LogEntry.objects.bulk_create(
        [LogEntry(run_id=run_id, sequence=seq, time=time, level=level, message=message) for seq, time, level, message in entries],
        batch_size=2000,
    )
    newest = entries[-1][0]
    LogEntry.objects.filter(run_id=run_id, sequence__lte=newest - max_lines).delete()
