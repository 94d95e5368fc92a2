"""A strategy's parameter schema (`config_schema.json`, product.md §2): checked at publish,
turned into form parameters, and used to validate the strategy section of a run config.

Django-free. Lookout's own keywords: `x-lookout-type` (symbol | bar_frequency),
`x-lookout-asset-type` (EQUITY | FUTURE, required for symbols) and `x-lookout-order`, which
publish adds: the properties' order as written, because PostgreSQL's jsonb does not keep the
order of object keys and that order is the form's display order.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft7Validator

from strategies.bundle import SCHEMA_FILE, BundleError

PARAMETER_TYPES = ("string", "integer", "number", "boolean")
LOOKOUT_TYPES = ("symbol", "bar_frequency")
ASSET_TYPES = ("EQUITY", "FUTURE")
FREQUENCIES = ("second", "minute", "hour", "day")
ORDER_KEY = "x-lookout-order"
PROPERTY_KEYWORDS = {"x-lookout-type", "x-lookout-asset-type"}
DRAFT7_URIS = {"http://json-schema.org/draft-07/schema#", "http://json-schema.org/draft-07/schema"}
TRUE_WORDS = {"true", "on", "yes", "1"}
FALSE_WORDS = {"false", "off", "no", "0"}
TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false"}
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null|NaN|-?Infinity")
# As Draft7Validator.check_schema does it (formats too: a "pattern" must be a valid regex), but
# collecting every error rather than raising the first.
_META_VALIDATOR = Draft7Validator(Draft7Validator.META_SCHEMA, format_checker=Draft7Validator.FORMAT_CHECKER)


class _NonStandardConstant(ValueError):
    pass


class _JsonLines:
    """Where each key (and array item) of a JSON text starts, by path, so errors can name a line.
    Also notes keys written twice in one object, which json.loads silently collapses."""

    def __init__(self, text: str):
        self.text = text
        self.newlines = [index for index, char in enumerate(text) if char == "\n"]
        self.lines: dict[tuple, int] = {(): 1}
        self.duplicates: list[tuple] = []
        self._value(self._skip(0), ())

    def line_of(self, path: tuple) -> int:
        path = tuple(path)
        while path not in self.lines:
            path = path[:-1]
        return self.lines[path]

    def _line_at(self, position: int) -> int:
        return bisect.bisect_left(self.newlines, position) + 1

    def _skip(self, position: int) -> int:
        return _WHITESPACE.match(self.text, position).end()

    def _string_end(self, position: int) -> tuple[str, int]:
        return json.decoder.scanstring(self.text, position + 1)

    def _value(self, position: int, path: tuple) -> int:
        char = self.text[position]
        if char == "{":
            position = self._skip(position + 1)
            if self.text[position] == "}":
                return position + 1
            while True:
                key_line = self._line_at(position)
                key, position = self._string_end(position)
                key_path = (*path, key)
                if key_path in self.lines:
                    # A repeated key's children must not be taken for the first one's.
                    self.duplicates.append(key_path)
                    key_path = ("duplicate", *key_path)
                self.lines[key_path] = key_line
                position = self._skip(self._skip(position) + 1)  # past the ':'
                position = self._skip(self._value(position, key_path))
                if self.text[position] == "}":
                    return position + 1
                position = self._skip(position + 1)  # past the ','
        if char == "[":
            position = self._skip(position + 1)
            if self.text[position] == "]":
                return position + 1
            index = 0
            while True:
                self.lines[(*path, index)] = self._line_at(position)
                position = self._skip(self._value(position, (*path, index)))
                if self.text[position] == "]":
                    return position + 1
                position = self._skip(position + 1)
                index += 1
        if char == '"':
            return self._string_end(position)[1]
        return _SCALAR.match(self.text, position).end()


def _reject_constant(name: str):
    raise _NonStandardConstant(name)


def _show(value) -> str:
    return json.dumps(value) if isinstance(value, str | bool) or value is None else str(value)


def _resolve(node, root: dict):
    """Follow local `$ref`s ("#/definitions/x"); None when one points nowhere."""
    for _ in range(32):
        if not (isinstance(node, dict) and "$ref" in node):
            return node
        reference = node["$ref"]
        if not isinstance(reference, str) or not reference.startswith("#"):
            return None
        node = root
        for part in [piece for piece in reference[1:].split("/") if piece]:
            part = unquote(part).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
    return None


def _explain(error) -> str:
    """A validation error in the operator's words: what is wrong and what would be right."""
    rule, limit, got = error.validator, error.validator_value, _show(error.instance)
    if rule == "minimum":
        return f"must be at least {_show(limit)} (got {got})"
    if rule == "maximum":
        return f"must be at most {_show(limit)} (got {got})"
    if rule == "exclusiveMinimum":
        return f"must be greater than {_show(limit)} (got {got})"
    if rule == "exclusiveMaximum":
        return f"must be less than {_show(limit)} (got {got})"
    if rule == "enum":
        return f"must be one of {', '.join(_show(choice) for choice in limit)} (got {got})"
    if rule == "const":
        return f"must be {_show(limit)} (got {got})"
    if rule == "type":
        wanted = limit if isinstance(limit, str) else limit[0]
        return f"must be {TYPE_WORDS.get(wanted, wanted)} (got {got})"
    if rule == "minLength":
        return f"must be at least {limit} characters long (got {got})"
    if rule == "maxLength":
        return f"must be at most {limit} characters long (got {got})"
    if rule == "pattern":
        return f"must match the pattern {limit} (got {got})"
    if rule == "multipleOf":
        return f"must be a multiple of {_show(limit)} (got {got})"
    return error.message


def _walk_refs(node, path: tuple):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield (*path, key), value
            else:
                yield from _walk_refs(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_refs(value, (*path, index))


class _Problems:
    def __init__(self, lines: _JsonLines):
        self.lines = lines
        self.by_path: dict[tuple, list[str]] = {}

    def add(self, path: tuple, message: str) -> None:
        self.by_path.setdefault(tuple(path), []).append(message)

    def covers(self, path: tuple) -> bool:
        """Already reported at this path or at one enclosing it, not counting the top level."""
        path = tuple(path)
        return path in self.by_path or any(path[:length] in self.by_path for length in range(1, len(path)))

    def errors(self) -> list[BundleError]:
        found = [(self.lines.line_of(path), message) for path, messages in self.by_path.items() for message in messages]
        return [BundleError(SCHEMA_FILE, line, message) for line, message in sorted(found, key=lambda item: item[0])]


def schema_check(text: str) -> tuple[dict | None, list[BundleError]]:
    """Parse and check a config_schema.json text. Returns (schema, []) with `x-lookout-order`
    added, or (None, errors) naming the line and the fix of every problem found."""
    try:
        schema = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return None, [BundleError(SCHEMA_FILE, exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno}): fix the syntax")]
    except _NonStandardConstant as exc:
        line = text.count("\n", 0, max(text.find(str(exc)), 0)) + 1
        return None, [BundleError(SCHEMA_FILE, line, f"{exc} is not valid JSON: write a number instead")]
    except RecursionError:
        return None, [BundleError(SCHEMA_FILE, 1, "the JSON is nested too deeply: flatten it")]
    if not isinstance(schema, dict):
        return None, [BundleError(SCHEMA_FILE, 1, 'the schema must be a JSON object: {"type": "object", "properties": {...}}')]
    try:
        lines = _JsonLines(text)
    except RecursionError:
        return None, [BundleError(SCHEMA_FILE, 1, "the JSON is nested too deeply: flatten it")]
    problems = _Problems(lines)
    for path in lines.duplicates:
        problems.add(("duplicate", *path), f'"{path[-1]}" is written twice in the same object: keep one')

    if schema.get("type") != "object":
        problems.add(("type",) if "type" in schema else (), 'the top level must say "type": "object": set it')
    if "$schema" in schema and (not isinstance(schema["$schema"], str) or schema["$schema"] not in DRAFT7_URIS):
        problems.add(("$schema",), 'Lookout validates JSON Schema draft 7: set "$schema" to "http://json-schema.org/draft-07/schema#" or remove it')
    for key in schema:
        if isinstance(key, str) and key.startswith("x-lookout-"):
            if key == ORDER_KEY:
                problems.add((key,), f'"{ORDER_KEY}" is set by Lookout from the order of "properties": remove it')
            else:
                problems.add((key,), f'"{key}" is not a top-level keyword: put x-lookout-type and x-lookout-asset-type on a property')
    references_sound = True
    for path, reference in _walk_refs(schema, ()):
        if not isinstance(reference, str) or not reference.startswith("#"):
            references_sound = False
            problems.add(path, f'remote $ref {_show(reference)} is not allowed: copy the definition under "definitions" and refer to it as "#/definitions/<name>"')
        elif _resolve({"$ref": reference}, schema) is None:
            references_sound = False
            problems.add(path, f'$ref {_show(reference)} points nowhere (or round in a loop): point it at an entry under "definitions"')
    meta_errors = list(_META_VALIDATOR.iter_errors(schema))
    malformed = {tuple(error.absolute_path)[:2] for error in meta_errors}

    properties = schema.get("properties")
    if properties is None:
        problems.add((), 'the schema has no "properties": add "properties": {} with one entry per run parameter')
    elif not isinstance(properties, dict):
        problems.add(("properties",), '"properties" must be an object of parameter name to schema: fix it')
    else:
        for name, definition in properties.items():
            # A default can only be validated against a well-formed property, including
            # whatever its references lead to.
            well_formed = ("properties", name) not in malformed and (
                not any(_walk_refs(definition, ())) or (references_sound and not meta_errors)
            )
            _property_check(name, definition, schema, problems, check_default=well_formed)

    required = schema.get("required", [])
    if isinstance(required, list) and isinstance(properties, dict):
        for index, name in enumerate(required):
            if isinstance(name, str) and name not in properties:
                problems.add(("required", index), f'"required" names "{name}", which is not in "properties": add the property or remove the name')

    for error in meta_errors:
        path = tuple(error.absolute_path)
        if not problems.covers(path):
            where = "/".join(str(part) for part in path) or "the top level"
            problems.add(path, f"not valid JSON Schema draft 7 at {where}: {error.message}: fix it")

    errors = problems.errors()
    if errors:
        return None, errors
    return {**schema, ORDER_KEY: list(properties)}, []


def _property_check(name: str, definition, root: dict, problems: _Problems, *, check_default: bool) -> None:
    path = ("properties", name)
    resolved = _resolve(definition, root)
    if resolved is None:  # a $ref that points nowhere, reported with the other references
        return
    if not isinstance(resolved, dict):
        problems.add(path, f'parameter "{name}" must be an object such as {{"type": "integer", "default": 10}}: fix it')
        return
    if problems.covers(path):
        return
    json_type = resolved.get("type")
    if json_type not in PARAMETER_TYPES:
        problems.add(
            (*path, "type") if "type" in resolved else path,
            f'parameter "{name}" needs "type": one of {", ".join(_show(kind) for kind in PARAMETER_TYPES)} (got {_show(json_type)}): set it',
        )
        return
    for key in resolved:
        if isinstance(key, str) and key.startswith("x-lookout-") and key not in PROPERTY_KEYWORDS:
            problems.add((*path, key), f'parameter "{name}": unknown keyword "{key}": use "x-lookout-type" or "x-lookout-asset-type"')

    lookout_type = resolved.get("x-lookout-type")
    if lookout_type is not None and lookout_type not in LOOKOUT_TYPES:
        problems.add((*path, "x-lookout-type"), f'parameter "{name}": "x-lookout-type" must be "symbol" or "bar_frequency" (got {_show(lookout_type)}): fix it')
        return
    if lookout_type is not None and json_type != "string":
        problems.add((*path, "type"), f'parameter "{name}" is a {lookout_type}: its "type" must be "string": fix it')
        return

    asset_type = resolved.get("x-lookout-asset-type")
    if lookout_type == "symbol":
        if asset_type is None:
            problems.add(path, f'symbol parameter "{name}" needs "x-lookout-asset-type": "EQUITY" or "FUTURE": add it')
        elif asset_type not in ASSET_TYPES:
            problems.add((*path, "x-lookout-asset-type"), f'parameter "{name}": "x-lookout-asset-type" must be "EQUITY" or "FUTURE" (got {_show(asset_type)}): fix it')
    elif asset_type is not None:
        problems.add((*path, "x-lookout-asset-type"), f'parameter "{name}": "x-lookout-asset-type" only applies to symbols: remove it or add "x-lookout-type": "symbol"')

    if lookout_type == "bar_frequency":
        _frequency_check(name, resolved, path, problems)
    elif "enum" in resolved and isinstance(resolved["enum"], list):
        type_validator = Draft7Validator({"type": json_type})
        for index, choice in enumerate(resolved["enum"]):
            if not type_validator.is_valid(choice):
                problems.add((*path, "enum", index), f'parameter "{name}": choice {_show(choice)} is not {TYPE_WORDS[json_type]}, as "type" says: fix the choice or the type')

    for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if bound in resolved and json_type not in ("integer", "number"):
            problems.add((*path, bound), f'parameter "{name}": "{bound}" only applies to integer and number parameters: remove it')

    if check_default and "default" in resolved and not problems.covers(path):
        error = next(Draft7Validator(root).evolve(schema=resolved).iter_errors(resolved["default"]), None)
        if error is not None:
            problems.add((*path, "default"), f'parameter "{name}": default {_explain(error)}: change the default or the constraint')


def _frequency_check(name: str, resolved: dict, path: tuple, problems: _Problems) -> None:
    allowed = ", ".join(FREQUENCIES)
    if "const" in resolved:
        if resolved["const"] not in FREQUENCIES:
            problems.add((*path, "const"), f'parameter "{name}": frequency {_show(resolved["const"])} is not one of {allowed}: fix it')
    elif "enum" in resolved:
        choices = resolved["enum"]
        if not isinstance(choices, list) or not choices:
            problems.add((*path, "enum"), f'parameter "{name}": "enum" must list at least one of {allowed}: fix it')
            return
        for index, choice in enumerate(choices):
            if choice not in FREQUENCIES:
                problems.add((*path, "enum", index), f'parameter "{name}": frequency {_show(choice)} is not one of {allowed}: fix it')
    else:
        problems.add(path, f'bar frequency parameter "{name}" needs "const": "minute" (pinned) or "enum": ["minute", "hour"] (operator chooses): add one')


@dataclass(frozen=True)
class Parameter:
    """One run parameter as the run form and the strategy editor render it."""

    name: str
    kind: str  # text | integer | decimal | boolean | choice | symbol | bar_frequency
    json_type: str  # string | integer | number | boolean: the type of the value
    title: str
    description: str = ""
    default: Any = None
    required: bool = False
    minimum: int | float | None = None
    maximum: int | float | None = None
    choices: tuple = ()
    asset_type: str | None = None  # EQUITY | FUTURE, for symbols
    pinned_frequency: str | None = None
    frequency_choices: tuple[str, ...] = ()


KIND_BY_TYPE = {"string": "text", "integer": "integer", "number": "decimal", "boolean": "boolean"}


def parameters_from_schema(schema: dict) -> list[Parameter]:
    """The parameters of a checked schema in display order."""
    properties = schema.get("properties") or {}
    order = [name for name in schema.get(ORDER_KEY) or [] if name in properties]
    order += [name for name in properties if name not in order]
    required = set(schema.get("required") or [])
    parameters = []
    for name in order:
        definition = _resolve(properties[name], schema) or {}
        json_type = definition.get("type", "string")
        lookout_type = definition.get("x-lookout-type")
        common = {
            "name": name,
            "json_type": json_type,
            "title": definition.get("title") or name.replace("_", " ").capitalize(),
            "description": definition.get("description", ""),
            "default": definition.get("default"),
            "required": name in required,
        }
        if lookout_type == "symbol":
            parameters.append(Parameter(kind="symbol", asset_type=definition.get("x-lookout-asset-type"), **common))
        elif lookout_type == "bar_frequency":
            pinned = definition.get("const")
            choices = (pinned,) if pinned is not None else tuple(definition.get("enum") or FREQUENCIES)
            parameters.append(Parameter(kind="bar_frequency", pinned_frequency=pinned, frequency_choices=choices, **common))
        elif "enum" in definition:
            parameters.append(Parameter(kind="choice", choices=tuple(definition["enum"]), **common))
        else:
            parameters.append(
                Parameter(kind=KIND_BY_TYPE.get(json_type, "text"), minimum=definition.get("minimum"), maximum=definition.get("maximum"), **common)
            )
    return parameters


def _is_blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _coerce(parameter: Parameter, raw):
    """A value from a form (strings) or from JSON, as the parameter's type; ValueError says why not."""
    json_type = parameter.json_type
    if parameter.kind == "symbol":
        if not isinstance(raw, str):
            raise ValueError(f"must be a symbol such as \"MSFT\" (got {_show(raw)})")
        return raw.strip().upper()
    if parameter.kind == "bar_frequency":
        if not isinstance(raw, str):
            raise ValueError(f"must be one of {', '.join(parameter.frequency_choices)} (got {_show(raw)})")
        return raw.strip().lower()
    if json_type == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str) and raw.strip().lower() in TRUE_WORDS | FALSE_WORDS:
            return raw.strip().lower() in TRUE_WORDS
        raise ValueError(f"must be true or false (got {_show(raw)})")
    if json_type == "integer":
        number = _number(raw, parameter)
        if number != number.to_integral_value():
            raise ValueError(f"must be a whole number (got {_show(raw)})")
        return int(number)
    if json_type == "number":
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            if isinstance(raw, float) and not math.isfinite(raw):
                raise ValueError(f"must be a finite number (got {raw})")
            return raw
        return float(_number(raw, parameter))
    if not isinstance(raw, str):
        raise ValueError(f"must be text (got {_show(raw)})")
    return raw.strip()


def _number(raw, parameter: Parameter) -> Decimal:
    wanted = "a whole number" if parameter.json_type == "integer" else "a number"
    if isinstance(raw, bool):
        raise ValueError(f"must be {wanted} (got {_show(raw)})")
    try:
        number = Decimal(raw.strip().replace(",", "") if isinstance(raw, str) else str(raw))
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"must be {wanted} (got {_show(raw)})") from None
    if not number.is_finite():
        raise ValueError(f"must be {wanted} (got {_show(raw)})")
    return number


def strategy_values_validate(*, schema: dict, values: dict, security_validate: Callable) -> tuple[dict, dict[str, str]]:
    """Validate the strategy section of a run config against the version's schema.

    Returns (values, errors): values has every parameter, in display order, coerced to its type
    with defaults filled in (None for an optional parameter left empty; what the operator typed
    for one in error, so a form can show it again); errors maps a parameter name to a message
    naming it and the fix. `security_validate(symbol=, asset_type=)` checks symbol parameters
    against the security master; its result has `.status` ("recognised", "other_asset_type",
    "unknown") and `.message`.
    """
    values = values or {}
    root_validator = Draft7Validator(schema)
    properties = schema.get("properties") or {}
    cleaned: dict = {}
    errors: dict[str, str] = {}
    for parameter in parameters_from_schema(schema):
        name = parameter.name
        raw = values.get(name)
        if _is_blank(raw):
            if parameter.pinned_frequency is not None:
                value = parameter.pinned_frequency
            elif parameter.default is not None:
                value = parameter.default
            elif parameter.json_type == "boolean":
                value = False  # an unticked checkbox sends nothing
            else:
                cleaned[name] = None
                if parameter.required:
                    errors[name] = f"{name}: required: enter a value"
                continue
        else:
            try:
                value = _coerce(parameter, raw)
            except ValueError as exc:
                cleaned[name] = raw
                errors[name] = f"{name}: {exc}"
                continue
        definition = _resolve(properties[name], schema) or {}
        problem = next(root_validator.evolve(schema=definition).iter_errors(value), None)
        if problem is not None:
            errors[name] = f"{name}: {_explain(problem)}"
        elif parameter.kind == "symbol":
            result = security_validate(symbol=value, asset_type=parameter.asset_type)
            if result.status != "recognised":
                errors[name] = f"{name}: {result.message or f'{value} is not a known {parameter.asset_type.lower()}'}"
        cleaned[name] = value
    names = ", ".join(properties) or "none"
    for name in values:
        if name not in properties:
            errors[name] = f"{name}: unknown parameter: remove it (this strategy's parameters: {names})"
    return cleaned, errors
