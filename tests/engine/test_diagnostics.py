"""Issue aggregation and traceback trimming."""

from runs.engine.diagnostics import INVALID_ACTION, ORDER_REJECTED, IssueCollector, strategy_traceback
from tests.engine.factories import compile_strategy

SOURCE = """
from strategies.sdk import StrategyBase


def explode(values):
    return values["missing"]


class Strategy(StrategyBase):
    def on_start(self, now):
        return explode({})
"""


def test_repeats_of_one_fingerprint_are_counted_per_batch():
    issues = IssueCollector()
    issues.report(ORDER_REJECTED, key="short not allowed", message="first", detail="order 1")
    issues.report(ORDER_REJECTED, key="short not allowed", message="second", detail="order 2")
    issues.report(INVALID_ACTION, key="short not allowed", message="other code")
    first, other = issues.drain()
    assert (first.code, first.count, first.message, first.detail) == ("order_rejected", 2, "first", "order 2")
    assert first.fingerprint != other.fingerprint and len(first.fingerprint) == 32
    assert first.first_seen <= first.last_seen
    assert issues.drain() == []
    issues.report(ORDER_REJECTED, key="short not allowed", message="again")
    [again] = issues.drain()
    assert (again.count, again.fingerprint) == (1, first.fingerprint)  # the recorder adds it to the stored count


def test_traceback_keeps_only_the_strategy_frames_without_the_prefix():
    strategy_class = compile_strategy(SOURCE, prefix="lookout://demo@3/")
    try:
        strategy_class(None, {}).on_start(None)
    except KeyError as exc:
        trimmed = strategy_traceback(exc, "lookout://demo@3/")
    assert trimmed.location == "strategy.py:6 in explode"
    assert trimmed.message == "KeyError: 'missing' in strategy.py:6 in explode"
    assert trimmed.detail.splitlines() == [
        "Traceback (most recent call last):",
        '  File "strategy.py", line 11, in on_start',
        "    return explode({})",
        '  File "strategy.py", line 6, in explode',
        '    return values["missing"]',
        "KeyError: 'missing'",
    ]


def test_an_exception_without_strategy_frames_has_no_location():
    try:
        int("x")
    except ValueError as exc:
        trimmed = strategy_traceback(exc, "lookout://demo@3/")
    assert trimmed.location == ""
    assert trimmed.detail == trimmed.message == "ValueError: invalid literal for int() with base 10: 'x'"
