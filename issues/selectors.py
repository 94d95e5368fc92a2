"""Reading a run's diagnostics: its classified issues and pages of its strategy log."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Case, IntegerField, Value, When

from issues.models import Issue, LogEntry, Severity

LOG_PAGE_SIZE = 100


def issue_list(*, run_id: int) -> list[Issue]:
    """A run's issues, errors first, then the most recently seen."""
    severity_rank = Case(
        When(severity=Severity.ERROR, then=Value(0)),
        When(severity=Severity.WARNING, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return list(Issue.objects.filter(run_id=run_id).order_by(severity_rank, "-last_seen", "-id"))


def issue_count(*, run_id: int) -> int:
    return Issue.objects.filter(run_id=run_id).count()


@dataclass(frozen=True)
class LogPage:
    entries: list[LogEntry]  # oldest first, as a log reads
    older_than: int | None  # pass as `before` to get the page before this one; None at the start

    @property
    def has_older(self) -> bool:
        return self.older_than is not None


def log_page(*, run_id: int, before: int | None = None, size: int = LOG_PAGE_SIZE) -> LogPage:
    """The `size` newest log lines of a run with a sequence below `before` (the tail when None)."""
    entries = LogEntry.objects.filter(run_id=run_id)
    if before is not None:
        entries = entries.filter(sequence__lt=before)
    newest_first = list(entries.order_by("-sequence")[: size + 1])
    has_older = len(newest_first) > size
    page = newest_first[:size][::-1]
    return LogPage(entries=page, older_than=page[0].sequence if has_older and page else None)


def log_line_count(*, run_id: int) -> int:
    return LogEntry.objects.filter(run_id=run_id).count()
