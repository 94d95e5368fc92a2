"""Optimize trial generation (product.md §11): Django-free, pure functions.

A search space maps a strategy parameter to the values a study tries. Values are written as a
comma-separated list ("5, 10, 20") or a range "start:stop:step" (stop included when the steps
land on it); ranges step in Decimal so 0.1 steps give 0.3, not 0.30000000000000004.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from strategies.schema import FALSE_WORDS, TRUE_WORDS, Parameter

MAX_TRIALS = 500
MAX_VALUES_PER_PARAMETER = 500
SWEEP, GRID = "sweep", "grid"


class SearchSpaceError(Exception):
    """Bad values in a search space: `errors` maps a parameter name (or "space") to a message
    naming the field and the fix."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))


@dataclass(frozen=True)
class Trial:
    """One trial: the parameters it changes from the base config (none for the baseline)."""

    overrides: dict
    baseline: bool = False

    @property
    def label(self) -> str:
        if self.baseline and not self.overrides:
            return "baseline"
        return ", ".join(f"{name}={value}" for name, value in self.overrides.items())


def _decimal(text: str, *, field: str) -> Decimal:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{field} {text.strip()!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{field} {text.strip()!r} is not a finite number")
    return number


def range_values(*, start, stop, step, integer: bool) -> list:
    """start, start+step, … up to stop (included when reached). Decimal arithmetic, so decimal
    steps do not drift; ints for integer parameters, floats otherwise."""
    start, stop, step = (_decimal(str(value), field=name) for name, value in (("start", start), ("stop", stop), ("step", step)))
    if step <= 0:
        raise ValueError(f"step must be greater than 0 (got {step})")
    if stop < start:
        raise ValueError(f"stop ({stop}) must not be below start ({start})")
    if integer and any(value != value.to_integral_value() for value in (start, stop, step)):
        raise ValueError("start, stop and step must be whole numbers for an integer parameter")
    count = int((stop - start) / step) + 1
    if count > MAX_VALUES_PER_PARAMETER:
        raise ValueError(f"the range gives {count} values, more than {MAX_VALUES_PER_PARAMETER}: use a larger step")
    values = [start + step * index for index in range(count)]
    return [int(value) for value in values] if integer else [float(value) for value in values]


def _coerce(parameter: Parameter, raw):
    """One value as the parameter's type; ValueError says why not. Constraints (minimum, enum,
    symbols in the security master) are checked later on the whole trial config."""
    if parameter.json_type == "boolean":
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        raise ValueError(f"{raw!r} is not true or false")
    if parameter.json_type in ("integer", "number"):
        if isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not a number")
        number = _decimal(str(raw), field="value")
        if parameter.json_type == "integer":
            if number != number.to_integral_value():
                raise ValueError(f"{raw} is not a whole number")
            return int(number)
        return float(number)
    if not isinstance(raw, str):
        raise ValueError(f"{raw!r} is not text")
    text = raw.strip()
    if parameter.kind == "symbol":
        return text.upper()
    if parameter.kind == "bar_frequency":
        return text.lower()
    return text


def values_parse(parameter: Parameter, spec) -> list:
    """A parameter's values from what the operator wrote: a list (from JSON or checkboxes), a
    "start:stop:step" range (numbers only) or a comma-separated list. Duplicates are dropped,
    the order kept. Raises ValueError with the fix."""
    if isinstance(spec, list):
        raw_values = spec
    else:
        text = str(spec or "").strip()
        if not text:
            raise ValueError("no values: enter a comma-separated list, a range start:stop:step, or switch the row off")
        if ":" in text and parameter.json_type in ("integer", "number"):
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError(f"{text!r}: a range is start:stop:step, e.g. 5:50:5")
            return range_values(start=parts[0], stop=parts[1], step=parts[2], integer=parameter.json_type == "integer")
        raw_values = [piece for piece in (part.strip() for part in text.split(",")) if piece]
    if not raw_values:
        raise ValueError("no values: enter at least one value, or switch the row off")
    values = []
    for raw in raw_values:
        value = _coerce(parameter, raw)
        if value not in values:
            values.append(value)
    if len(values) > MAX_VALUES_PER_PARAMETER:
        raise ValueError(f"{len(values)} values, more than {MAX_VALUES_PER_PARAMETER}: try fewer")
    return values


def search_space_parse(*, parameters: list[Parameter], spec: dict) -> dict[str, list]:
    """{name: written values} into {name: typed values} in the strategy's parameter order.
    Every problem is collected; raises SearchSpaceError naming each parameter."""
    by_name = {parameter.name: parameter for parameter in parameters}
    errors: dict[str, str] = {}
    space: dict[str, list] = {}
    for name in spec:
        if name not in by_name:
            errors[name] = f"unknown parameter: this strategy's parameters are {', '.join(by_name) or 'none'}"
    for parameter in parameters:
        if parameter.name not in spec:
            continue
        if parameter.pinned_frequency is not None:
            errors[parameter.name] = f"pinned to {parameter.pinned_frequency} by the strategy: it cannot be varied"
            continue
        try:
            space[parameter.name] = values_parse(parameter, spec[parameter.name])
        except ValueError as exc:
            errors[parameter.name] = str(exc)
    if not errors and not space:
        errors["space"] = "nothing to vary: switch on at least one parameter and give it values"
    if errors:
        raise SearchSpaceError(errors)
    return space


def trials_count(*, base_values: dict, space: dict[str, list], mode: str) -> int:
    if mode == GRID:
        count = 1
        for values in space.values():
            count *= len(values)
        return count
    return 1 + sum(sum(1 for value in values if value != base_values.get(name)) for name, values in space.items())


def trials_generate(*, base_values: dict, space: dict[str, list], mode: str, max_trials: int = MAX_TRIALS) -> list[Trial]:
    """Sweep: the baseline (base config unchanged), then one trial per (parameter, value) that
    varies that parameter alone; a value equal to the base value is left out, as it would only
    repeat the baseline. Grid: every combination (the one equal to the base config is marked
    baseline). Refuses more than `max_trials` before building any."""
    if mode not in (SWEEP, GRID):
        raise SearchSpaceError({"mode": f"unknown study type {mode!r}: use {SWEEP} or {GRID}"})
    count = trials_count(base_values=base_values, space=space, mode=mode)
    if count > max_trials:
        raise SearchSpaceError({"space": f"{count} trials is more than the {max_trials} a study may run: use fewer values or larger range steps"})
    if mode == GRID:
        names = list(space)
        trials = []
        for combination in itertools.product(*(space[name] for name in names)):
            overrides = dict(zip(names, combination, strict=True))
            trials.append(Trial(overrides=overrides, baseline=all(base_values.get(name) == value for name, value in overrides.items())))
        return trials
    trials = [Trial(overrides={}, baseline=True)]
    for name, values in space.items():
        trials.extend(Trial(overrides={name: value}) for value in values if value != base_values.get(name))
    if len(trials) == 1:
        raise SearchSpaceError({"space": "every value equals the base run's: this sweep would only repeat the baseline; add other values"})
    return trials
