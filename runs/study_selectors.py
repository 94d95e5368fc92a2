"""Reads for the Optimize pages and the study CLI: studies with their progress, the trial
table (sortable by any column), the best trial for the objective and the grid heatmap."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, Q, QuerySet

from runs.models import FINISHED_STATUSES, Mode, Run, Status, Study
from runs.study_services import METRICS

METRIC_LABELS = {
    "total_return": "Total return", "cagr": "CAGR", "sharpe": "Sharpe", "sortino": "Sortino", "max_drawdown": "Max drawdown",
    "calmar": "Calmar", "win_rate": "Win rate", "profit_factor": "Profit factor", "trades": "Trades", "exposure": "Exposure",
    "final_value": "Final value",
}
PERCENT_METRICS = {"total_return", "cagr", "max_drawdown", "win_rate", "exposure"}


def study_list() -> QuerySet[Study]:
    return Study.objects.select_related("strategy_version__strategy", "base_run", "created_by").annotate(
        finished_trials=Count("trials", filter=Q(trials__status__in=FINISHED_STATUSES)),
        failed_trials=Count("trials", filter=Q(trials__status=Status.ERROR)),
    )


def study_detail(*, study_id: int) -> Study | None:
    return study_list().filter(pk=study_id).first()


def study_progress(study: Study) -> int:
    """Finished trials in percent."""
    return round(100 * study.finished_trials / study.trial_count) if study.trial_count else 100


def study_base_candidates() -> QuerySet[Run]:
    """Backtest runs a study can start from: not themselves trials."""
    return Run.objects.filter(mode=Mode.BACKTEST, study__isnull=True).select_related("strategy_version__strategy")[:200]


@dataclass
class TrialRow:
    run: Run
    values: dict  # varied parameter -> value
    metrics: dict
    baseline: bool
    best: bool = False


@dataclass
class TrialTable:
    parameters: list[str]
    rows: list[TrialRow]
    best: TrialRow | None
    sort: str
    descending: bool
    heatmap: dict | None = None
    columns: list[str] = field(default_factory=lambda: list(METRICS))


def _objective_key(study: Study):
    sign = 1 if study.objective_direction == Study.Direction.MAX else -1

    def key(row: TrialRow):
        return sign * row.metrics[study.objective_metric]

    return key


def study_trial_table(*, study: Study, sort: str = "", descending: bool = True) -> TrialTable:
    """Every trial with its varied values and metrics, sorted by `sort` (a parameter, a metric
    or "trial"); rows without the value go last either way."""
    parameters = list(study.search_space)
    base_values = study.base_run.config.get("strategy") or {}
    rows = []
    for run in Run.objects.filter(study_id=study.pk).order_by("pk"):
        strategy = run.config.get("strategy") or {}
        values = {name: strategy.get(name) for name in parameters}
        rows.append(TrialRow(run=run, values=values, metrics=run.metrics or {}, baseline=all(values[name] == base_values.get(name) for name in parameters)))
    scored = [row for row in rows if row.run.status == Status.COMPLETE and isinstance(row.metrics.get(study.objective_metric), int | float)]
    best = max(scored, key=_objective_key(study)) if scored else None
    if best is not None:
        best.best = True
    if sort not in parameters and sort not in METRICS:
        sort = "trial"
    if sort != "trial":
        def value_of(row):
            return row.values.get(sort) if sort in parameters else row.metrics.get(sort)

        present = [row for row in rows if value_of(row) is not None]
        missing = [row for row in rows if value_of(row) is None]
        rows = sorted(present, key=lambda row: (str(type(value_of(row))), value_of(row)), reverse=descending) + missing
    elif descending:
        rows.reverse()
    heatmap = _heatmap(study, rows) if study.search_mode == Study.SearchMode.GRID and len(parameters) == 2 else None
    return TrialTable(parameters=parameters, rows=rows, best=best, sort=sort, descending=descending, heatmap=heatmap)


def _cell_colour(value, low, high, *, higher_is_better: bool) -> str:
    """Red (worst) to green (best) through pale yellow, as an hsl() colour."""
    if value is None:
        return ""
    share = 0.5 if high == low else (value - low) / (high - low)
    if not higher_is_better:
        share = 1 - share
    return f"hsl({round(share * 120)}, 65%, {round(82 - 12 * abs(share - 0.5))}%)"


def _heatmap(study: Study, rows: list[TrialRow]) -> dict:
    """The objective over a two-parameter grid: rows are the first parameter's values, columns
    the second's."""
    first, second = study.search_space
    by_cell = {(row.values[first], row.values[second]): row for row in rows}
    metric = study.objective_metric
    numbers = [row.metrics.get(metric) for row in rows if isinstance(row.metrics.get(metric), int | float)]
    low, high = (min(numbers), max(numbers)) if numbers else (0, 0)
    grid = []
    for y in study.search_space[first]:
        cells = []
        for x in study.search_space[second]:
            row = by_cell.get((y, x))
            value = row.metrics.get(metric) if row is not None and isinstance(row.metrics.get(metric), int | float) else None
            cells.append({
                "row": row, "value": value, "x": x,
                "colour": _cell_colour(value, low, high, higher_is_better=study.objective_direction == Study.Direction.MAX),
            })
        grid.append({"label": y, "cells": cells})
    return {"y_name": first, "x_name": second, "x_labels": study.search_space[second], "rows": grid, "low": low, "high": high}
