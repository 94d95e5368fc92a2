"""Reading strategies and their published versions."""

from __future__ import annotations

from django.db.models import Max, QuerySet

from strategies.models import Strategy, StrategyVersion


def strategy_list() -> QuerySet[Strategy]:
    """Every strategy by name, each with `latest_version_number` (None before the first publish)."""
    return Strategy.objects.select_related("owner").annotate(latest_version_number=Max("versions__number")).order_by("name")


def strategy_version_latest(*, strategy: Strategy | None) -> StrategyVersion | None:
    """The newest published version, or None when there is none (or no strategy)."""
    if strategy is None:
        return None
    return StrategyVersion.objects.filter(strategy=strategy).select_related("strategy").order_by("-number").first()


def strategy_version_get(*, strategy: Strategy, number: int) -> StrategyVersion:
    """Version `number` of `strategy`; raises StrategyVersion.DoesNotExist."""
    return StrategyVersion.objects.select_related("strategy", "published_by").get(strategy=strategy, number=number)
