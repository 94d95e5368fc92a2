"""Run config validation, section by section: environment (by mode), strategy (against the
version's schema and the security master) and core (platform settings).

Errors are keyed "section.field" so the console, the API and the CLI can show them next to the
field they belong to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from portfolio.broker_accounts import broker_account_problem
from runs.engine import CoreSettings, CoreSettingsError
from runs.models import Mode
from securities.selectors import security_validate
from strategies.schema import strategy_values_validate

EXCHANGE_TZ = ZoneInfo("America/New_York")
SECTIONS = ("environment", "strategy", "core")
PAPER_FEEDS = ("replay",)


@dataclass
class ConfigCheck:
    config: dict
    errors: dict[str, str] = field(default_factory=dict)  # invalid values: refuse to save
    missing: list[str] = field(default_factory=list)  # required but empty: may be saved, not started

    @property
    def startable(self) -> bool:
        return not self.errors and not self.missing

    def start_blocker(self) -> str | None:
        """Why Start Run is disabled, in the words the button shows."""
        if self.errors:
            return "config invalid: " + ", ".join(sorted(key.split(".", 1)[-1] for key in self.errors))
        if self.missing:
            return "config incomplete: " + ", ".join(name.split(".", 1)[-1] for name in self.missing)
        return None


class RunConfigError(Exception):
    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))


def parse_run_time(value, *, field_name: str, end_of_day: bool = False) -> datetime:
    """A date means whole sessions (start: that day, end: through that day, inclusive); an ISO
    datetime is taken as is (naive ones in the exchange's time zone). Returns UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value + timedelta(days=1) if end_of_day else value, time(0), EXCHANGE_TZ)
    else:
        text = str(value).strip()
        if not text:
            raise ValueError(f"{field_name} is empty")
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                moment = datetime.combine(day + timedelta(days=1) if end_of_day else day, time(0), EXCHANGE_TZ)
            else:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"'{text}' is not a date (YYYY-MM-DD) or ISO datetime (YYYY-MM-DDTHH:MM)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=EXCHANGE_TZ)
    return moment.astimezone(ZoneInfo("UTC"))


def backtest_window(environment: dict) -> tuple[datetime, datetime]:
    return (
        parse_run_time(environment["start"], field_name="start"),
        parse_run_time(environment["end"], field_name="end", end_of_day=True),
    )


def _check_environment(mode: str, environment: dict, check: ConfigCheck) -> dict:
    cleaned: dict = {}
    if mode == Mode.BACKTEST:
        allowed = {"start", "end"}
        for name in ("start", "end"):
            value = environment.get(name)
            if value in (None, ""):
                check.missing.append(f"environment.{name}")
                continue
            try:
                parse_run_time(value, field_name=name)
                cleaned[name] = value.isoformat() if isinstance(value, date | datetime) else str(value).strip()
            except ValueError as exc:
                check.errors[f"environment.{name}"] = f"{exc}; e.g. 2015-01-02"
        if "start" in cleaned and "end" in cleaned:
            start, end = backtest_window(cleaned)
            if start >= end:
                check.errors["environment.end"] = "must be after start: pick an end date later than the start date"
    elif mode == Mode.PAPER:
        allowed = {"feed", "speed", "replay_start"}
        feed = environment.get("feed") or "replay"
        if feed not in PAPER_FEEDS:
            check.errors["environment.feed"] = f"unknown feed '{feed}': choose one of {', '.join(PAPER_FEEDS)}"
        cleaned["feed"] = feed
        speed = environment.get("speed", 60)
        try:
            speed = float(speed)
            if not 0 < speed <= 100000:
                raise ValueError
            cleaned["speed"] = speed
        except (TypeError, ValueError):
            check.errors["environment.speed"] = "must be a number between 0 and 100000 (1 = real time)"
        if environment.get("replay_start"):
            try:
                parse_run_time(environment["replay_start"], field_name="replay_start")
                cleaned["replay_start"] = str(environment["replay_start"])
            except ValueError as exc:
                check.errors["environment.replay_start"] = str(exc)
    else:
        allowed = {"broker_account"}
        if not environment.get("broker_account"):
            check.missing.append("environment.broker_account")
        else:
            cleaned["broker_account"] = str(environment["broker_account"]).strip()
            problem = broker_account_problem(name=cleaned["broker_account"])
            if problem:
                check.errors["environment.broker_account"] = problem
    for unknown in sorted(set(environment) - allowed):
        check.errors[f"environment.{unknown}"] = f"unknown field for {mode} mode: remove it (allowed: {', '.join(sorted(allowed))})"
    return cleaned


def _validate_symbol(*, symbol: str, asset_type: str):
    return security_validate(symbol=symbol, asset_type=asset_type.lower())


def run_config_check(*, config: dict, mode: str, schema: dict) -> ConfigCheck:
    """Validate and clean a run config. Never raises for bad values: they land in `errors`."""
    config = config or {}
    check = ConfigCheck(config={})
    if not isinstance(config, dict):
        check.errors["config"] = "must be an object with environment, strategy and core sections"
        return check
    for unknown in sorted(set(config) - set(SECTIONS)):
        check.errors[unknown] = f"unknown config section: use {', '.join(SECTIONS)}"
    sections = {}
    for name in SECTIONS:
        value = config.get(name) or {}
        if not isinstance(value, dict):
            check.errors[name] = "must be an object of field values"
            value = {}
        sections[name] = value

    check.config["environment"] = _check_environment(mode, sections["environment"], check)

    properties = schema.get("properties", {})
    missing_parameters = [
        name
        for name in schema.get("required", [])
        if sections["strategy"].get(name) in (None, "") and properties.get(name, {}).get("default") in (None, "")
    ]
    values, strategy_errors = strategy_values_validate(schema=schema, values=sections["strategy"], security_validate=_validate_symbol)
    check.missing.extend(f"strategy.{name}" for name in missing_parameters)
    for name, message in strategy_errors.items():
        if name not in missing_parameters:
            check.errors[f"strategy.{name}"] = message.removeprefix(f"{name}: ")
    check.config["strategy"] = values

    try:
        CoreSettings.from_config(sections["core"])
        check.config["core"] = dict(sections["core"])
    except CoreSettingsError as exc:
        check.config["core"] = dict(sections["core"])
        for name, message in exc.errors.items():
            check.errors[f"core.{name}"] = message
    return check
