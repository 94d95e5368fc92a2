"""Reading strategies and their published versions."""

from __future__ import annotations

from django.db.models import Count, Max, OuterRef, QuerySet, Subquery

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


def strategy_list_with_activity() -> QuerySet[Strategy]:
    """Every strategy with its latest version (number, id, who, when) and how many runs use it."""
    latest = StrategyVersion.objects.filter(strategy=OuterRef("pk")).order_by("-number")
    return (
        Strategy.objects.annotate(
            latest_version_number=Max("versions__number"),
            latest_version_id=Subquery(latest.values("pk")[:1]),
            last_published_at=Subquery(latest.values("published_at")[:1]),
            last_published_by=Subquery(latest.values("published_by__username")[:1]),
            run_count=Count("versions__runs", distinct=True),
        )
        .select_related("owner")
        .order_by("name")
    )


def strategy_versions_with_run_counts(*, strategy: Strategy) -> list[StrategyVersion]:
    """The strategy's versions, newest first, each with `run_count`."""
    return list(strategy.versions.select_related("published_by").annotate(run_count=Count("runs")).order_by("-number"))


def strategy_version_runs(*, version: StrategyVersion):
    """The runs of a version, newest first (through the reverse relation: strategies never imports runs)."""
    return version.runs.select_related("created_by").order_by("-created_at")
