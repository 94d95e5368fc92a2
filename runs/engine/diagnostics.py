"""Issues (product.md §9): classified, deduplicated by fingerprint, counted per batch; and
strategy tracebacks trimmed to the strategy's own files."""

from __future__ import annotations

import hashlib
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime

from runs.engine.records import IssueRecord


@dataclass(frozen=True)
class IssueKind:
    code: str
    component: str  # strategy | simulation | data | broker | platform
    classification: str  # user | system
    severity: str  # info | warning | error


STRATEGY_EXCEPTION = IssueKind("strategy_exception", "strategy", "user", "error")
HANDLER_TIMEOUT = IssueKind("handler_timeout", "strategy", "user", "error")
INVALID_ACTION = IssueKind("invalid_action", "strategy", "user", "warning")
ORDER_REJECTED = IssueKind("order_rejected", "simulation", "user", "warning")
RISK_LIMIT = IssueKind("risk_limit", "simulation", "user", "warning")
DATA_MISSING = IssueKind("data_missing", "data", "user", "warning")
DATA_MISSING_FATAL = IssueKind("data_missing", "data", "user", "error")
DATA_GAP = IssueKind("data_gap", "data", "system", "warning")
INTERNAL_ERROR = IssueKind("internal_error", "platform", "system", "error")


def fingerprint(code: str, key: str) -> str:
    return hashlib.sha256(f"{code}\x1f{key}".encode()).hexdigest()[:32]


class IssueCollector:
    """Issues since the last batch, one record per fingerprint with the count of new occurrences."""

    def __init__(self):
        self._pending: dict[str, IssueRecord] = {}

    def report(self, kind: IssueKind, *, key: str, message: str, detail: str = "") -> None:
        """`key` identifies repeats (with the code); the first message of a batch is kept and the
        latest detail, so the detail shows the most recent example."""
        print_key = fingerprint(kind.code, key)
        now = datetime.now(UTC)
        record = self._pending.get(print_key)
        if record is None:
            self._pending[print_key] = IssueRecord(
                code=kind.code,
                component=kind.component,
                classification=kind.classification,
                severity=kind.severity,
                fingerprint=print_key,
                message=message[:500],
                detail=detail,
                count=1,
                first_seen=now,
                last_seen=now,
            )
        else:
            record.count += 1
            record.last_seen = now
            if detail:
                record.detail = detail

    def drain(self) -> list[IssueRecord]:
        issues = list(self._pending.values())
        self._pending.clear()
        return issues


@dataclass(frozen=True)
class StrategyTraceback:
    message: str  # "ZeroDivisionError: division by zero in strategy.py:12 in on_bar"
    detail: str  # the traceback, strategy frames only
    location: str  # "strategy.py:12 in on_bar" or "" when no frame is the strategy's


def strategy_traceback(exc: BaseException, file_prefix: str) -> StrategyTraceback:
    """Keep only the frames whose file starts with `file_prefix`, shown without it."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename.startswith(file_prefix)]
    exception_line = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    lines = ["Traceback (most recent call last):"] if frames else []
    for frame in frames:
        lines.append(f'  File "{frame.filename[len(file_prefix):]}", line {frame.lineno}, in {frame.name}')
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    lines.append(exception_line)
    location = ""
    if frames:
        innermost = frames[-1]
        location = f"{innermost.filename[len(file_prefix):]}:{innermost.lineno} in {innermost.name}"
    message = f"{exception_line} in {location}" if location else exception_line
    return StrategyTraceback(message=message, detail="\n".join(lines), location=location)
