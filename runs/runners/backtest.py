"""The Backtest runner: builds the engine's inputs from a Run, runs it, stores the metrics."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from django.conf import settings

from issues.services import issue_record
from portfolio.metrics import metrics_from_fills
from runs.config import backtest_window
from runs.engine import CoreSettings, run_backtest
from runs.engine.records import BarArrays
from runs.models import Run
from runs.runners import RunOutcome
from runs.runners.record_writer import RecordWriter
from runs.runners.recorder import KillSwitch, backtest_recorder
from securities.selectors import bars_as_arrays, security_get
from strategies.loader import load_version
from strategies.sdk.base import SecurityInfo
from strategies.sdk.enums import AssetType


class DatabaseMarketData:
    """The engine's MarketData over the security master and stored bars. `bars_cache` (a dict)
    keeps loaded bars for the next user of the same cache."""

    def __init__(self, *, bars_cache: dict | None = None):
        self._securities = {}
        self._bars_cache = bars_cache

    def _security_row(self, symbol: str, asset_type):
        key = (symbol.upper(), str(asset_type))
        if key not in self._securities:
            self._securities[key] = security_get(symbol=key[0], asset_type=key[1])
        return self._securities[key]

    def security(self, symbol: str, asset_type) -> SecurityInfo | None:
        row = self._security_row(symbol, asset_type)
        if row is None:
            return None
        return SecurityInfo(
            symbol=row.symbol,
            asset_type=AssetType(row.asset_type),
            name=row.name,
            exchange=row.exchange,
            currency=row.currency,
            tick_size=row.tick_size,
            multiplier=row.multiplier,
            fractionable=row.fractionable,
        )

    def bars(self, symbol: str, asset_type, frequency, start: datetime, end: datetime) -> BarArrays:
        row = self._security_row(symbol, asset_type)
        if row is None:
            empty = np.empty(0)
            return BarArrays(np.empty(0, dtype=np.int64), empty, empty, empty, empty, empty)
        key = (row.pk, str(frequency), start, end)
        if self._bars_cache is not None and key in self._bars_cache:
            return self._bars_cache[key]
        arrays = bars_as_arrays(security=row, frequency=str(frequency), start=start, end=end)
        bars = BarArrays(
            times=arrays.times, open=arrays.open, high=arrays.high, low=arrays.low, close=arrays.close, volume=arrays.volume
        )
        if self._bars_cache is not None:
            self._bars_cache[key] = bars
        return bars


# The trials of a study share their bars: loaded once per worker process per study, so a
# hundred trials read them once per process, and every trial of a study sees the same data even
# if bars are imported meanwhile. Only the latest study's bars are kept.
_study_bars: dict = {"study_id": None, "bars": {}}


def _study_bars_cache(study_id: int | None) -> dict | None:
    if study_id is None:
        return None
    if _study_bars["study_id"] != study_id:
        _study_bars["study_id"], _study_bars["bars"] = study_id, {}
    return _study_bars["bars"]


def backtest_run_execute(run: Run) -> RunOutcome:
    loaded = load_version(run.strategy_version)
    core = CoreSettings.from_config(run.config.get("core") or {})
    start, end = backtest_window(run.config["environment"])
    recorder = backtest_recorder(run_id=run.pk, log_max_lines=settings.RUN_LOG_MAX_LINES)
    writes_in_background = isinstance(recorder, RecordWriter)
    market_data = DatabaseMarketData(bars_cache=_study_bars_cache(run.study_id))
    try:
        result = run_backtest(
            strategy_class=loaded.strategy_class,
            strategy_config=run.config.get("strategy") or {},
            core=core,
            market_data=market_data,
            start=start,
            end=end,
            recorder=recorder,
            should_stop=KillSwitch(run.pk),
            strategy_file_prefix=loaded.file_prefix,
            flush_interval_seconds=settings.BACKTEST_FLUSH_SECONDS,
            log_max_lines=settings.RUN_LOG_MAX_LINES,
            client_order_prefix=f"r{run.pk}",
        )
        metrics = run_metrics(run=run, result=result, market_data=market_data, core=core, start=start, end=end)
    except BaseException:
        if writes_in_background:
            recorder.close(raise_failure=False)  # the run's own failure is the one to report
        raise
    if writes_in_background:
        recorder.close()  # the metrics were worked out while the last batches were stored
    metrics_save(run=run, result=result, metrics=metrics)
    return RunOutcome(status=result.status, message=result.error_message or "")


def metrics_store(*, run: Run, result, market_data: DatabaseMarketData, core, start, end) -> None:
    """Metrics from the engine's equity curve and round trips, stored on the run."""
    metrics = run_metrics(run=run, result=result, market_data=market_data, core=core, start=start, end=end)
    metrics_save(run=run, result=result, metrics=metrics)


def run_metrics(*, run: Run, result, market_data: DatabaseMarketData, core, start, end) -> dict:
    """The run's metrics from the engine's equity curve and round trips (item 4 of the engine)."""
    benchmark_values = None
    if core.benchmark:
        benchmark_values = benchmark_values_at(run=run, market_data=market_data, benchmark=core.benchmark, times=result.equity_times, start=start, end=end)
    return metrics_from_fills(
        equity_times=result.equity_times,
        equity_values=result.equity_values,
        fills=result.fills,
        multipliers=result.multipliers,
        exposure_fraction=result.exposure_fraction,
        benchmark_values=benchmark_values,
    )


def metrics_save(*, run: Run, result, metrics: dict) -> None:
    Run.objects.filter(pk=run.pk).update(metrics=metrics, portfolio_value=result.portfolio_value, bars_processed=result.bars_processed)


def benchmark_values_at(*, run: Run, market_data: DatabaseMarketData, benchmark, times: np.ndarray, start, end):
    """The benchmark's daily close at or before each equity time, or None (with a data_missing
    issue) when it has no bars covering the run's first days."""
    bench = market_data.bars(benchmark.symbol, benchmark.asset_type, "day", start, end)
    if len(times) == 0:
        return None
    grace = np.int64(5 * 86400 * 10**9)  # a long weekend between the run's start and the first bar
    if len(bench) == 0 or bench.times[0] > times[0] + grace:
        issue_record(
            run_id=run.pk,
            code="data_missing",
            component="data",
            classification="user",
            severity="warning",
            message=f"The benchmark {benchmark.symbol} has no daily bars at the start of this run, so benchmark metrics were skipped: import its bars or choose another benchmark.",
        )
        return None
    index = np.searchsorted(bench.times, times, side="right") - 1
    return bench.close[np.clip(index, 0, None)]
