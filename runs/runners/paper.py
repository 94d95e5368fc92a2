"""The Paper runner: the real-time loop (runs.engine.realtime) on the replay feed of stored bars,
with simulated fills. Runs until killed or until the replay runs out of stored data."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from runs.config import parse_run_time
from runs.engine import CoreSettings
from runs.engine.feed import from_ns, to_ns
from runs.engine.realtime import run_realtime
from runs.engine.replay import ReplayFeed, default_replay_start
from runs.engine.sessions import calendar_for, sessions_between
from runs.models import Run
from runs.runners import RunOutcome
from runs.runners.backtest import DatabaseMarketData, metrics_store
from runs.runners.recorder import DatabaseRecorder, KillSwitch, RunningMetricsRecorder
from securities.models import Bar
from securities.selectors import bar_frequencies_for, bars_available, security_get
from strategies.loader import load_version
from strategies.sdk.enums import AssetType

# Each flush is also the run's heartbeat: far below HEARTBEAT_STALE_AFTER (runs/execution.py).
PAPER_FLUSH_SECONDS = 2.0
# A Paper run goes on until it is killed: its headline metrics are brought up to date this often.
PAPER_METRICS_SECONDS = 60.0


def paper_run_execute(run: Run) -> RunOutcome:
    loaded = load_version(run.strategy_version)
    core = CoreSettings.from_config(run.config.get("core") or {})
    environment = run.config.get("environment") or {}
    strategy_config = run.config.get("strategy") or {}
    market_data = DatabaseMarketData()
    start = replay_start_for(environment=environment, strategy_config=strategy_config, schema=run.strategy_version.config_schema)
    feed = ReplayFeed(market_data=market_data, last_bar_time=stored_last_bar_time, start=start, speed=float(environment.get("speed", 60)))
    result = run_realtime(
        strategy_class=loaded.strategy_class,
        strategy_config=strategy_config,
        core=core,
        feed=feed,
        market_data=market_data,
        recorder=RunningMetricsRecorder(
            DatabaseRecorder(run_id=run.pk, log_max_lines=settings.RUN_LOG_MAX_LINES),
            run_id=run.pk,
            market_data=market_data,
            every_seconds=PAPER_METRICS_SECONDS,
        ),
        should_stop=KillSwitch(run.pk),
        strategy_file_prefix=loaded.file_prefix,
        flush_interval_seconds=PAPER_FLUSH_SECONDS,
        log_max_lines=settings.RUN_LOG_MAX_LINES,
        client_order_prefix=f"r{run.pk}",
    )
    end = from_ns(int(result.equity_times[-1])) if len(result.equity_times) else start
    metrics_store(run=run, result=result, market_data=market_data, core=core, start=start, end=max(end, start))
    return RunOutcome(status=result.status, message=result.error_message or "")


def stored_last_bar_time(symbol: str, asset_type, frequency) -> datetime | None:
    security = security_get(symbol=symbol, asset_type=str(asset_type))
    if security is None:
        return None
    return bars_available(security=security, frequency=str(frequency))[1]


def replay_start_for(*, environment: dict, strategy_config: dict, schema: dict) -> datetime:
    """Where the replay starts: the configured replay_start (a date means that session's open,
    so the first bar comes at once), else the start of the last sessions of stored data for the
    symbols the strategy's config names (of any stored bars when it names none)."""
    symbols = _configured_securities(strategy_config=strategy_config, schema=schema)
    asset_type = AssetType(symbols[0].asset_type) if symbols else AssetType.EQUITY
    if environment.get("replay_start"):
        moment = parse_run_time(environment["replay_start"], field_name="replay_start")
        if len(str(environment["replay_start"]).strip()) > 10:
            return moment  # a time of day was given: taken as is
        sessions = sessions_between(calendar_for(asset_type, None), moment, moment)
        session = sessions.working_session(to_ns(moment))
        return max(moment, from_ns(sessions.open_list[session])) if session < len(sessions) else moment
    latest = None
    for security in symbols:
        for frequency in bar_frequencies_for(security):
            last = bars_available(security=security, frequency=frequency)[1]
            if last is not None and (latest is None or last > latest):
                latest, asset_type = last, AssetType(security.asset_type)
    if latest is None:
        latest = Bar.objects.order_by("-time").values_list("time", flat=True).first()
    if latest is None:
        raise ValueError("there are no stored bars to replay: import bars, then Start again")
    sessions = sessions_between(calendar_for(asset_type, None), latest, latest)
    return default_replay_start(latest, sessions)


def _configured_securities(*, strategy_config: dict, schema: dict) -> list:
    """The securities named by the config's symbol parameters, in schema order."""
    found = []
    for name, definition in (schema.get("properties") or {}).items():
        if definition.get("x-lookout-type") != "symbol" or not strategy_config.get(name):
            continue
        kind = str(definition.get("x-lookout-asset-type") or "equity").lower()
        security = security_get(symbol=str(strategy_config[name]).strip().upper(), asset_type=kind)
        if security is not None:
            found.append(security)
    return found
