"""Issue deduplication, bounded logs and audit records."""

from datetime import UTC, datetime, timedelta

import pytest

from issues.models import Issue, LogEntry
from issues.services import audit_record, issue_record, log_entries_append
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2017, 1, 3, 15, 0, tzinfo=UTC)


def test_repeats_of_an_issue_count_up_instead_of_adding_rows():
    run = RunFactory()
    for minute in range(3):
        issue_record(
            run_id=run.pk, code="order_rejected", component="simulation", classification="user", severity="warning",
            message="insufficient buying power", fingerprint="order_rejected:insufficient buying power", count=2,
            first_seen=T0 + timedelta(minutes=minute), last_seen=T0 + timedelta(minutes=minute),
        )
    issue = Issue.objects.get(run=run)
    assert issue.count == 6
    assert issue.first_seen == T0 and issue.last_seen == T0 + timedelta(minutes=2)


def test_the_same_code_with_another_fingerprint_is_another_issue():
    run = RunFactory()
    for reason in ("insufficient buying power", "short not allowed"):
        issue_record(run_id=run.pk, code="order_rejected", component="simulation", classification="user", severity="warning", message=reason)
    assert Issue.objects.filter(run=run).count() == 2


def test_logs_keep_only_the_newest_lines():
    run = RunFactory()
    log_entries_append(run_id=run.pk, entries=[(i, T0, "INFO", f"line {i}") for i in range(1, 8)], max_lines=5)
    log_entries_append(run_id=run.pk, entries=[(i, T0, "INFO", f"line {i}") for i in range(8, 10)], max_lines=5)
    assert list(LogEntry.objects.filter(run=run).values_list("message", flat=True)) == [f"line {i}" for i in range(5, 10)]


def test_audit_records_refusals_and_anonymous_actors(django_user_model):
    from django.contrib.auth.models import AnonymousUser

    user = django_user_model.objects.create_user("a")
    allowed = audit_record(actor=user, action="run.start", object_type="run", object_id=7, allowed=True)
    refused = audit_record(actor=AnonymousUser(), action="run.start", object_type="run", object_id=7, allowed=False)
    assert (allowed.actor, allowed.object_id, allowed.allowed) == (user, "7", True)
    assert (refused.actor, refused.allowed) == (None, False)
