"""Reads of a run's diagnostics: issue order and log pages. Depends on: the test database, the
recording services of issues/services.py and the run factory."""

from datetime import UTC, datetime, timedelta

import pytest

from issues.selectors import issue_count, issue_list, log_line_count, log_page
from issues.services import issue_record, log_entries_append
from tests.runs.factories import RunFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2017, 1, 3, 15, tzinfo=UTC)


def record(run, code, severity, seen):
    return issue_record(run_id=run.pk, code=code, component="strategy", classification="user", severity=severity,
                        message=code, first_seen=seen, last_seen=seen)


def test_issues_come_errors_first_then_most_recently_seen():
    run = RunFactory()
    record(run, "old_warning", "warning", T0)
    record(run, "info", "info", T0 + timedelta(hours=3))
    record(run, "new_warning", "warning", T0 + timedelta(hours=2))
    record(run, "error", "error", T0)
    record(RunFactory(), "elsewhere", "error", T0)
    assert [issue.code for issue in issue_list(run_id=run.pk)] == ["error", "new_warning", "old_warning", "info"]
    assert issue_count(run_id=run.pk) == 4


def test_the_log_is_read_newest_page_first_each_page_oldest_line_first():
    run = RunFactory()
    log_entries_append(run_id=run.pk, entries=[(n, T0, "INFO", f"line {n}") for n in range(1, 26)])
    tail = log_page(run_id=run.pk, size=10)
    assert [entry.sequence for entry in tail.entries] == list(range(16, 26))
    assert tail.has_older and tail.older_than == 16
    middle = log_page(run_id=run.pk, before=tail.older_than, size=10)
    assert [entry.sequence for entry in middle.entries] == list(range(6, 16))
    first = log_page(run_id=run.pk, before=middle.older_than, size=10)
    assert [entry.sequence for entry in first.entries] == list(range(1, 6))
    assert not first.has_older and first.older_than is None
    assert log_line_count(run_id=run.pk) == 25


def test_a_log_of_exactly_one_page_has_nothing_older():
    run = RunFactory()
    log_entries_append(run_id=run.pk, entries=[(n, T0, "INFO", "x") for n in range(1, 11)])
    page = log_page(run_id=run.pk, size=10)
    assert len(page.entries) == 10 and not page.has_older
    assert log_page(run_id=RunFactory().pk).entries == []
