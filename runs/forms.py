"""The run form: New Run, Edit Config and the Configuration tab render the same fields.

The form does not validate: it turns posted values into a run config for the services
(`run_create`, `run_update_config`), whose `RunConfigError` keys ("section.field") are the
form's input names, so each message lands next to its field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from portfolio.broker_accounts import broker_accounts_enabled
from runs.config import PAPER_FEEDS
from runs.engine import CoreSettings
from runs.models import Mode
from securities.selectors import security_validate
from strategies.schema import FREQUENCIES, parameters_from_schema

# Per mode: (name, label, kind, help). Names are the environment keys runs/config.py accepts.
ENVIRONMENT_FIELDS = {
    Mode.BACKTEST: [
        ("start", "Start", "date", "First session of the backtest (exchange time)."),
        ("end", "End", "date", "Last session, included."),
    ],
    Mode.PAPER: [
        ("feed", "Feed", "choice", "Where real-time bars come from; replay plays stored bars."),
        ("speed", "Replay speed", "decimal", "How many times faster than real time the replay plays (1 = real time)."),
        ("replay_start", "Replay from", "date", "Optional: the first session the replay plays."),
    ],
    Mode.LIVE: [
        ("broker_account", "Broker account", "choice", "The account orders are sent to (enabled accounts; an admin adds them)."),
    ],
}
PAPER_DEFAULTS = {"feed": "replay", "speed": 60}


@dataclass
class FormField:
    """One input as the template draws it. `name` is both the input name and the error key."""

    name: str
    label: str
    kind: str  # text | integer | decimal | boolean | choice | symbol | bar_frequency | date | datetime
    value: Any = ""
    error: str = ""
    help: str = ""
    required: bool = False
    choices: tuple[tuple[str, str], ...] = ()
    minimum: Any = None
    maximum: Any = None
    asset_type: str = ""  # symbol fields: "equity" | "future"
    pinned: bool = False  # bar frequency fixed by the strategy
    validation: Any = None  # symbol fields: the security master's SecurityValidation
    parameter: str = ""  # strategy parameter name (anchor in the strategy editor)
    id_prefix: str = "run"  # keeps ids unique when two run forms share a page (dialog and tab)

    @property
    def input_id(self) -> str:
        return f"{self.id_prefix}-" + self.name.replace(".", "-")

    @property
    def step(self) -> str:
        return "1" if self.kind == "integer" else "any"

    @property
    def checked(self) -> bool:
        return self.value is True or str(self.value).lower() in ("true", "on", "1", "yes")


@dataclass(frozen=True)
class Mismatch:
    """A symbol that exists only under another asset type than its parameter declares."""

    field: FormField
    message: str
    editor_url: str


def _display(value) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return value
    return str(value)


def mode_choices(*, user) -> list[tuple[str, str]]:
    """Backtest and Paper; Live only where it is enabled and the user may trade live."""
    modes = [(Mode.BACKTEST.value, Mode.BACKTEST.label), (Mode.PAPER.value, Mode.PAPER.label)]
    if settings.LIVE_TRADING_ENABLED and user.has_perm("runs.trade_live"):
        modes.append((Mode.LIVE.value, Mode.LIVE.label))
    return modes


@dataclass(frozen=True)
class CoreInput:
    """One input of the Advanced section. A composite setting (commission: per share with a
    minimum, or basis points) becomes one input per field of its variants."""

    key: str  # input name and error key: "core.slippage_bps", "core.commission.bps"
    path: tuple[str, ...]  # where the value sits in the core section
    kind: str
    definition: dict


def _json_type(definition: dict) -> str | None:
    kind = definition.get("type")
    if isinstance(kind, list):  # ["number", "null"]: an optional number
        kind = next((item for item in kind if item != "null"), None)
    return kind


def _input_kind(definition: dict) -> str:
    if "enum" in definition:
        return "choice"
    return {"boolean": "boolean", "integer": "integer", "number": "decimal"}.get(_json_type(definition), "text")


def core_inputs() -> list[CoreInput]:
    """The Advanced section's inputs, from the engine's own schema of the core section."""
    inputs: list[CoreInput] = []
    for name, definition in (CoreSettings.json_schema().get("properties") or {}).items():
        options = [option for option in definition.get("oneOf") or definition.get("anyOf") or [] if option.get("type") != "null"]
        symbol = next((option for option in options if option.get("x-lookout-type") == "symbol"), None)
        if symbol is not None:
            inputs.append(CoreInput(f"core.{name}", (name,), "symbol", {**definition, "asset_type": symbol.get("x-lookout-asset-type", "EQUITY")}))
        elif options and all(option.get("type") == "object" for option in options):
            seen = set()
            for option in options:
                for field_name, sub in (option.get("properties") or {}).items():
                    if field_name in seen:
                        continue
                    seen.add(field_name)
                    title = f"{definition.get('title', name)}: {sub.get('title', field_name).lower()}"
                    inputs.append(CoreInput(f"core.{name}.{field_name}", (name, field_name), _input_kind(sub), {**sub, "title": title}))
        else:
            inputs.append(CoreInput(f"core.{name}", (name,), _input_kind(definition), definition))
    return inputs


def _core_value(values: dict, path: tuple[str, ...]):
    value = values.get(path[0])
    if len(path) == 1:
        return value.get("symbol") if isinstance(value, dict) and "symbol" in value else value
    return value.get(path[1]) if isinstance(value, dict) else None


class RunForm:
    """The fields of a run for one strategy version and mode, showing `config` (a stored
    config, or what was just posted) and the services' `errors`."""

    def __init__(
        self,
        *,
        version,
        mode: str,
        description: str = "",
        config: dict | None = None,
        errors: dict | None = None,
        editable: bool = True,
        id_prefix: str = "run",
    ):
        self.version = version
        self.id_prefix = id_prefix
        self.mode = mode
        self.description = description
        self.config = config or {}
        self.errors = dict(errors or {})
        self.editable = editable
        self.parameters = parameters_from_schema(version.config_schema) if version is not None else []
        self.environment_fields = self._environment_fields()
        self.parameter_fields = self._parameter_fields()
        self.core_fields = self._core_fields()
        for form_field in self.fields:
            form_field.id_prefix = id_prefix
        shown = {"description", "mode"} | {f.name for f in self.fields}
        self.other_errors = [f"{key}: {message}" if key not in ("config",) else message for key, message in self.errors.items() if key not in shown]

    @property
    def fields(self) -> list[FormField]:
        return self.environment_fields + self.parameter_fields + self.core_fields

    def _environment_fields(self) -> list[FormField]:
        values = self.config.get("environment") or {}
        fields = []
        for name, label, kind, help_text in ENVIRONMENT_FIELDS.get(self.mode, []):
            key = f"environment.{name}"
            value = _display(values.get(name, PAPER_DEFAULTS.get(name, "") if self.mode == Mode.PAPER else ""))
            if kind == "date" and len(str(value)) > 10:
                kind = "datetime"
            choices = tuple((feed, feed.capitalize()) for feed in PAPER_FEEDS) if name == "feed" else ()
            if name == "broker_account":
                choices = tuple((account.name, str(account)) for account in broker_accounts_enabled())
            fields.append(
                FormField(key, label, kind, value, self.errors.get(key, ""), help_text, required=name in ("start", "end", "broker_account"), choices=choices)
            )
        return fields

    def _parameter_fields(self) -> list[FormField]:
        values = self.config.get("strategy") or {}
        fields = []
        for parameter in self.parameters:
            key = f"strategy.{parameter.name}"
            value = values.get(parameter.name, parameter.default)
            if parameter.kind == "bar_frequency" and parameter.pinned_frequency:
                value = parameter.pinned_frequency
            if parameter.kind == "choice":
                choices = tuple((str(choice), str(choice)) for choice in parameter.choices)
            elif parameter.kind == "bar_frequency":
                choices = tuple((frequency, frequency.capitalize()) for frequency in parameter.frequency_choices or FREQUENCIES)
            else:
                choices = ()
            form_field = FormField(
                key,
                parameter.title,
                parameter.kind,
                _display(value),
                self.errors.get(key, "").removeprefix(f"{parameter.name}: "),
                parameter.description,
                required=parameter.required,
                choices=choices,
                minimum=parameter.minimum,
                maximum=parameter.maximum,
                asset_type=(parameter.asset_type or "").lower(),
                pinned=bool(parameter.pinned_frequency),
                parameter=parameter.name,
            )
            if parameter.kind == "symbol" and str(form_field.value).strip():
                form_field.validation = security_validate(symbol=str(form_field.value).strip().upper(), asset_type=form_field.asset_type)
            fields.append(form_field)
        return fields

    def _core_fields(self) -> list[FormField]:
        values = self.config.get("core") or {}
        fields = []
        for core_input in core_inputs():
            definition = core_input.definition
            value = _core_value(values, core_input.path)
            if value is None and len(core_input.path) == 1:
                value = definition.get("default")
            # A setting-level message ("choose one model") goes on its first input.
            error = self.errors.get(core_input.key) or self.errors.pop(f"core.{core_input.path[0]}", "")
            form_field = FormField(
                core_input.key,
                definition.get("title") or core_input.path[-1].replace("_", " ").capitalize(),
                core_input.kind,
                _display(value),
                error,
                definition.get("description", ""),
                choices=tuple((str(choice), str(choice)) for choice in definition.get("enum", ())),
                minimum=definition.get("minimum"),
                maximum=definition.get("maximum"),
                asset_type=str(definition.get("asset_type", "")).lower(),
            )
            if core_input.kind == "symbol" and str(form_field.value).strip():
                form_field.validation = security_validate(symbol=str(form_field.value).strip().upper(), asset_type=form_field.asset_type)
            fields.append(form_field)
        return fields

    @property
    def mismatches(self) -> list[Mismatch]:
        found = []
        for form_field in self.parameter_fields:
            validation = form_field.validation
            if validation is not None and validation.status == "other_asset_type":
                # The strategy editor's page; its anchors are the parameter names.
                editor = f"/strategies/{self.version.strategy_id}/edit#param-{form_field.parameter}"
                found.append(Mismatch(form_field, validation.message, editor))
        return found

    @property
    def core_has_errors(self) -> bool:
        return any(f.error for f in self.core_fields)


def _last(data, name: str) -> str | None:
    """The last value posted under `name` (a checkbox posts a hidden "false" before itself)."""
    values = data.getlist(name)
    return values[-1] if values else None


def config_from_data(data, *, version, mode: str) -> dict:
    """A run config from posted form values. Blank inputs are left out, so the services apply
    their defaults and report what is missing; nothing is judged here."""
    environment = {}
    for name, _label, _kind, _help in ENVIRONMENT_FIELDS.get(mode, []):
        value = (_last(data, f"environment.{name}") or "").strip()
        if value:
            environment[name] = value
    strategy = {}
    for parameter in parameters_from_schema(version.config_schema):
        value = _last(data, f"strategy.{parameter.name}")
        if value is not None and value.strip():
            strategy[parameter.name] = value.strip()
    core: dict = {}
    for core_input in core_inputs():
        value = _last(data, core_input.key)
        if value is None or not value.strip():
            continue
        value = value.strip()
        if core_input.kind == "boolean":
            value = value.lower() in ("true", "on", "1", "yes")
        if len(core_input.path) == 1:
            core[core_input.path[0]] = value
        else:
            core.setdefault(core_input.path[0], {})[core_input.path[1]] = value
    return {"environment": environment, "strategy": strategy, "core": core}
