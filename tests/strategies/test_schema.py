import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.schema import ORDER_KEY, parameters_from_schema, schema_check, strategy_values_validate

FULL_SCHEMA = """{
  "type": "object",
  "properties": {
    "symbol": {"type": "string", "title": "Instrument", "x-lookout-type": "symbol", "x-lookout-asset-type": "FUTURE", "default": "ES"},
    "slow": {"type": "integer", "minimum": 2, "maximum": 200, "default": 20, "description": "Slow window"},
    "fast": {"type": "integer", "minimum": 1, "default": 10},
    "risk": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.02},
    "use_stops": {"type": "boolean", "default": true},
    "mode": {"type": "string", "enum": ["long_only", "long_short"], "default": "long_only"},
    "note": {"type": "string"},
    "frequency": {"type": "string", "x-lookout-type": "bar_frequency", "enum": ["minute", "hour"]},
    "pinned": {"type": "string", "x-lookout-type": "bar_frequency", "const": "minute"},
    "window": {"$ref": "#/definitions/window"}
  },
  "required": ["symbol", "note"],
  "definitions": {"window": {"type": "integer", "minimum": 5, "default": 5}}
}
"""


def check(properties_or_schema, *, raw=False):
    text = properties_or_schema if raw else json.dumps({"type": "object", "properties": properties_or_schema}, indent=2)
    return schema_check(text)


def only_error(text):
    schema, errors = schema_check(text)
    assert schema is None and len(errors) == 1, errors
    return errors[0]


@dataclass
class Verdict:
    status: str
    message: str = ""


class FakeSecurityMaster:
    """Knows MSFT (equity) and ES (future); records what it was asked."""

    def __init__(self):
        self.asked = []

    def __call__(self, *, symbol, asset_type):
        self.asked.append((symbol, asset_type))
        known = {("MSFT", "EQUITY"), ("ES", "FUTURE")}
        if (symbol, asset_type) in known:
            return Verdict("recognised", "Known")
        if any(known_symbol == symbol for known_symbol, _ in known):
            return Verdict("other_asset_type", f"{symbol} found as Equity while this field expects Future")
        return Verdict("unknown", f"{symbol} is not in the security master: did you mean ES?")


# --- publish-time checks -------------------------------------------------------------------


def test_a_valid_schema_parses_and_records_the_property_order():
    schema, errors = schema_check(FULL_SCHEMA)
    assert errors == []
    assert schema[ORDER_KEY] == ["symbol", "slow", "fast", "risk", "use_stops", "mode", "note", "frequency", "pinned", "window"]


def test_invalid_json_names_the_line_and_column():
    error = only_error('{\n  "type": "object",\n  "properties": {\n    "a": {"type": "integer",}\n  }\n}')
    assert (error.file, error.line) == ("config_schema.json", 4)
    assert "invalid JSON" in error.message and "column" in error.message and "fix the syntax" in error.message


def test_nan_is_refused_as_json():
    error = only_error('{"type": "object",\n "properties": {"a": {"type": "number", "default": NaN}}}')
    assert error.line == 2 and "NaN is not valid JSON" in error.message


@pytest.mark.parametrize("text", ["[]", '"object"', "3"])
def test_the_schema_must_be_an_object(text):
    error = only_error(text)
    assert error.line == 1 and "must be a JSON object" in error.message


def test_the_top_level_type_must_be_object():
    error = only_error('{\n  "type": "array",\n  "properties": {}\n}')
    assert error.line == 2 and '"type": "object"' in error.message


def test_properties_are_required():
    error = only_error('{"type": "object"}')
    assert 'no "properties"' in error.message


def test_a_bad_asset_type_names_its_line_and_the_allowed_values():
    error = only_error(json.dumps({"type": "object", "properties": {"s": {"type": "string", "x-lookout-type": "symbol", "x-lookout-asset-type": "STOCK"}}}, indent=2))
    assert error.line == 7  # the line of "x-lookout-asset-type"
    assert '"EQUITY" or "FUTURE" (got "STOCK")' in error.message


def test_a_symbol_needs_an_asset_type():
    _, errors = check({"s": {"type": "string", "x-lookout-type": "symbol"}})
    assert len(errors) == 1 and 'needs "x-lookout-asset-type"' in errors[0].message and errors[0].line == 4


def test_asset_type_only_applies_to_symbols():
    _, errors = check({"n": {"type": "integer", "x-lookout-asset-type": "EQUITY"}})
    assert "only applies to symbols" in errors[0].message


def test_unknown_lookout_type_and_keyword():
    _, errors = check({"a": {"type": "string", "x-lookout-type": "ticker"}, "b": {"type": "string", "x-lookout-kind": "x"}})
    messages = [error.message for error in errors]
    assert any('"x-lookout-type" must be "symbol" or "bar_frequency" (got "ticker")' in m for m in messages)
    assert any('unknown keyword "x-lookout-kind"' in m for m in messages)


def test_a_lookout_type_must_be_a_string_parameter():
    _, errors = check({"s": {"type": "integer", "x-lookout-type": "symbol", "x-lookout-asset-type": "EQUITY"}})
    assert 'its "type" must be "string"' in errors[0].message


@pytest.mark.parametrize(
    "definition, expected",
    [
        ({"type": "string", "x-lookout-type": "bar_frequency"}, 'needs "const": "minute" (pinned) or "enum"'),
        ({"type": "string", "x-lookout-type": "bar_frequency", "const": "week"}, 'frequency "week" is not one of second, minute, hour, day'),
        ({"type": "string", "x-lookout-type": "bar_frequency", "enum": ["day", "tick"]}, 'frequency "tick" is not one of'),
        ({"type": "string", "x-lookout-type": "bar_frequency", "enum": []}, "must list at least one"),
    ],
)
def test_bar_frequency_values_are_checked(definition, expected):
    _, errors = check({"frequency": definition})
    assert any(expected in error.message for error in errors), errors


def test_a_default_below_its_minimum_is_refused_with_the_line_of_the_default():
    text = '{\n  "type": "object",\n  "properties": {\n    "fast": {\n      "type": "integer",\n      "minimum": 1,\n      "default": 0\n    }\n  }\n}'
    error = only_error(text)
    assert error.line == 7
    assert error.message == 'parameter "fast": default must be at least 1 (got 0): change the default or the constraint'


@pytest.mark.parametrize(
    "definition, expected",
    [
        ({"type": "integer", "default": "10"}, 'default must be a whole number (got "10")'),
        ({"type": "string", "enum": ["a", "b"], "default": "c"}, 'default must be one of "a", "b" (got "c")'),
        ({"type": "number", "maximum": 1, "default": 2}, "default must be at most 1 (got 2)"),
    ],
)
def test_defaults_must_satisfy_their_own_property(definition, expected):
    _, errors = check({"p": definition})
    assert expected in errors[0].message


def test_a_choice_must_match_the_type():
    _, errors = check({"p": {"type": "integer", "enum": [1, "two"]}})
    assert 'choice "two" is not a whole number' in errors[0].message


def test_a_parameter_needs_a_known_type():
    _, errors = check({"p": {"type": "array"}, "q": {"title": "no type"}, "r": 5})
    messages = " | ".join(error.message for error in errors)
    assert 'parameter "p" needs "type"' in messages and 'parameter "q" needs "type"' in messages
    assert 'parameter "r" must be an object' in messages


def test_minimum_only_on_numbers():
    _, errors = check({"p": {"type": "string", "minimum": 1}})
    assert '"minimum" only applies to integer and number parameters' in errors[0].message


def test_required_names_must_exist():
    schema_text = '{\n  "type": "object",\n  "properties": {"a": {"type": "string"}},\n  "required": [\n    "a",\n    "b"\n  ]\n}'
    error = only_error(schema_text)
    assert error.line == 6 and 'names "b", which is not in "properties"' in error.message


def test_remote_refs_are_refused_and_local_ones_resolved():
    error = only_error('{\n  "type": "object",\n  "properties": {\n    "a": {"$ref": "https://example.com/a.json"}\n  }\n}')
    assert error.line == 4 and "remote $ref" in error.message and "#/definitions/<name>" in error.message
    _, errors = check({"a": {"$ref": "#/definitions/missing"}})
    assert "points nowhere" in errors[0].message


def test_draft7_violations_are_reported_with_their_line():
    error = only_error('{\n  "type": "object",\n  "properties": {\n    "a": {"type": "integer", "minimum": "one"}\n  }\n}')
    assert error.line == 4 and "not valid JSON Schema draft 7 at properties/a/minimum" in error.message


def test_another_draft_is_refused():
    _, errors = schema_check(json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "properties": {}}))
    assert "draft 7" in errors[0].message


def test_a_key_written_twice_is_reported_at_the_second_one():
    error = only_error('{\n  "type": "object",\n  "properties": {\n    "a": {"type": "string"},\n    "a": {"type": "integer"}\n  }\n}')
    assert error.line == 5 and '"a" is written twice' in error.message


def test_lookout_order_is_ours():
    _, errors = schema_check(json.dumps({"type": "object", "properties": {}, ORDER_KEY: []}))
    assert "is set by Lookout" in errors[0].message


def test_every_problem_is_reported_at_once_in_line_order():
    _, errors = check({"a": {"type": "integer", "minimum": 5, "default": 1}, "b": {"type": "wrong"}, "c": {"type": "string", "x-lookout-type": "symbol"}})
    assert len(errors) == 3
    assert [error.line for error in errors] == sorted(error.line for error in errors)


# --- parameters for forms ------------------------------------------------------------------


def test_parameters_follow_the_display_order_and_describe_each_kind():
    schema, _ = schema_check(FULL_SCHEMA)
    # What PostgreSQL's jsonb hands back: keys re-ordered. The recorded order wins.
    reordered = {**schema, "properties": dict(sorted(schema["properties"].items()))}
    parameters = {parameter.name: parameter for parameter in parameters_from_schema(reordered)}
    assert list(parameters) == schema[ORDER_KEY]
    assert parameters["symbol"].kind == "symbol" and parameters["symbol"].asset_type == "FUTURE"
    assert parameters["symbol"].title == "Instrument" and parameters["symbol"].required and parameters["symbol"].default == "ES"
    slow = parameters["slow"]
    assert (slow.kind, slow.minimum, slow.maximum, slow.default, slow.description) == ("integer", 2, 200, 20, "Slow window")
    assert parameters["risk"].kind == "decimal"
    assert parameters["use_stops"].kind == "boolean" and parameters["use_stops"].default is True
    assert parameters["mode"].kind == "choice" and parameters["mode"].choices == ("long_only", "long_short")
    assert parameters["note"].kind == "text" and parameters["note"].required
    frequency = parameters["frequency"]
    assert (frequency.kind, frequency.pinned_frequency, frequency.frequency_choices) == ("bar_frequency", None, ("minute", "hour"))
    assert parameters["pinned"].pinned_frequency == "minute" and parameters["pinned"].frequency_choices == ("minute",)
    assert parameters["window"].kind == "integer" and parameters["window"].minimum == 5
    assert parameters["use_stops"].title == "Use stops"


# --- run-time values -----------------------------------------------------------------------


@pytest.fixture
def full_schema():
    return schema_check(FULL_SCHEMA)[0]


def test_form_strings_are_coerced_and_defaults_filled(full_schema):
    master = FakeSecurityMaster()
    values, errors = strategy_values_validate(
        schema=full_schema,
        values={"symbol": " es ", "slow": "30", "fast": "5.0", "risk": "0.1", "use_stops": "off", "note": " hi ", "frequency": "Hour"},
        security_validate=master,
    )
    assert errors == {}
    assert values == {
        "symbol": "ES",
        "slow": 30,
        "fast": 5,
        "risk": 0.1,
        "use_stops": False,
        "mode": "long_only",
        "note": "hi",
        "frequency": "hour",
        "pinned": "minute",
        "window": 5,
    }
    assert master.asked == [("ES", "FUTURE")]


@pytest.mark.parametrize("raw, expected", [("on", True), ("true", True), ("1", True), (True, True), ("false", False), (0, False)])
def test_booleans_from_forms(full_schema, raw, expected):
    values, errors = strategy_values_validate(schema=full_schema, values={"note": "x", "use_stops": raw}, security_validate=FakeSecurityMaster())
    assert errors == {} and values["use_stops"] is expected


def test_an_unticked_checkbox_without_default_is_false():
    schema, _ = check({"flag": {"type": "boolean"}})
    values, errors = strategy_values_validate(schema=schema, values={}, security_validate=FakeSecurityMaster())
    assert values == {"flag": False} and errors == {}


@pytest.mark.parametrize(
    "values, field, message",
    [
        ({"fast": "0"}, "fast", "fast: must be at least 1 (got 0)"),
        ({"slow": 500}, "slow", "slow: must be at most 200 (got 500)"),
        ({"risk": "0"}, "risk", "risk: must be greater than 0 (got 0.0)"),
        ({"fast": "ten"}, "fast", 'fast: must be a whole number (got "ten")'),
        ({"fast": "2.5"}, "fast", 'fast: must be a whole number (got "2.5")'),
        ({"fast": True}, "fast", "fast: must be a whole number (got true)"),
        ({"risk": "abc"}, "risk", 'risk: must be a number (got "abc")'),
        ({"risk": "inf"}, "risk", 'risk: must be a number (got "inf")'),
        ({"use_stops": "maybe"}, "use_stops", 'use_stops: must be true or false (got "maybe")'),
        ({"mode": "sideways"}, "mode", 'mode: must be one of "long_only", "long_short" (got "sideways")'),
        ({"note": 5}, "note", "note: must be text (got 5)"),
        ({"frequency": "day"}, "frequency", 'frequency: must be one of "minute", "hour" (got "day")'),
        ({"pinned": "hour"}, "pinned", 'pinned: must be "minute" (got "hour")'),
        ({"symbol": 7}, "symbol", 'symbol: must be a symbol such as "MSFT" (got 7)'),
        ({"symbol": "msft"}, "symbol", "symbol: MSFT found as Equity while this field expects Future"),
        ({"symbol": "ZZZ"}, "symbol", "symbol: ZZZ is not in the security master: did you mean ES?"),
        ({"bogus": 1}, "bogus", "bogus: unknown parameter: remove it (this strategy's parameters: symbol, slow, fast, risk, use_stops, mode, note, frequency, pinned, window)"),
        ({"window": 2}, "window", "window: must be at least 5 (got 2)"),
    ],
)
def test_each_kind_of_bad_value_is_named_with_its_fix(full_schema, values, field, message):
    _, errors = strategy_values_validate(schema=full_schema, values={"note": "x", **values}, security_validate=FakeSecurityMaster())
    assert errors == {field: message}


def test_a_required_value_without_default_is_reported(full_schema):
    values, errors = strategy_values_validate(schema=full_schema, values={"note": "  "}, security_validate=FakeSecurityMaster())
    assert errors == {"note": "note: required: enter a value"}
    assert values["note"] is None


def test_an_optional_value_left_empty_is_none():
    schema, _ = check({"label": {"type": "string"}})
    values, errors = strategy_values_validate(schema=schema, values={"label": ""}, security_validate=FakeSecurityMaster())
    assert values == {"label": None} and errors == {}


def test_the_default_symbol_is_checked_against_the_security_master(full_schema):
    master = FakeSecurityMaster()
    values, errors = strategy_values_validate(schema=full_schema, values={"note": "x"}, security_validate=master)
    assert values["symbol"] == "ES" and errors == {} and master.asked == [("ES", "FUTURE")]


def test_a_value_in_error_is_kept_as_typed_for_the_form(full_schema):
    values, errors = strategy_values_validate(schema=full_schema, values={"note": "x", "fast": "ten"}, security_validate=FakeSecurityMaster())
    assert values["fast"] == "ten" and "fast" in errors


def test_several_errors_are_reported_together(full_schema):
    _, errors = strategy_values_validate(
        schema=full_schema, values={"fast": "0", "slow": "1", "symbol": "ZZZ", "extra": 1}, security_validate=FakeSecurityMaster()
    )
    assert set(errors) == {"fast", "slow", "symbol", "note", "extra"}


def test_a_nested_reference_to_nowhere_is_reported_not_followed():
    _, errors = schema_check(
        json.dumps({"type": "object", "properties": {"a": {"$ref": "#/definitions/x"}}, "definitions": {"x": {"allOf": [{"$ref": "#/definitions/y"}], "type": "integer", "default": 1}}})
    )
    assert len(errors) == 1 and '$ref "#/definitions/y" points nowhere' in errors[0].message


def test_an_invalid_regex_pattern_is_reported():
    _, errors = check({"code": {"type": "string", "pattern": "[", "default": "x"}})
    assert "is not a 'regex'" in errors[0].message


def test_a_malformed_property_does_not_hide_another_bad_default():
    _, errors = check({"a": {"type": "integer", "minimum": "x", "default": 0}, "b": {"type": "integer", "minimum": 1, "default": 0}})
    assert [error.message.split(":")[0] for error in errors] == ["not valid JSON Schema draft 7 at properties/a/minimum", 'parameter "b"']


KEYWORDS = ["type", "properties", "required", "default", "minimum", "maximum", "enum", "const", "$ref", "definitions",
            "x-lookout-type", "x-lookout-asset-type", "items", "allOf", "pattern", "a", "b"]
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    ["object", "string", "integer", "number", "boolean", "symbol", "bar_frequency", "EQUITY", "day", "#/definitions/a", "#", "["]
)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYWORDS), inner, max_size=4), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(properties=st.dictionaries(st.sampled_from(["a", "b", "c"]), JSON_VALUES, max_size=3), extra=st.dictionaries(st.sampled_from(KEYWORDS), JSON_VALUES, max_size=3))
def test_any_json_gets_a_verdict_never_a_crash(properties, extra):
    text = json.dumps({"type": "object", **extra, "properties": properties}, indent=2)
    schema, errors = schema_check(text)
    assert (schema is None) == bool(errors)
    assert all(error.file == "config_schema.json" and 1 <= error.line <= text.count("\n") + 1 for error in errors)
    if schema is not None:
        parameters_from_schema(schema)
        strategy_values_validate(schema=schema, values={}, security_validate=FakeSecurityMaster())
