"""The `core` section: defaults, validation messages per field, and the JSON Schema for the form."""

from decimal import Decimal

import pytest
from jsonschema import Draft7Validator

from runs.engine import Benchmark, Commission, CoreSettings, CoreSettingsError
from strategies.sdk import AssetType


def errors_of(config) -> dict:
    with pytest.raises(CoreSettingsError) as caught:
        CoreSettings.from_config(config)
    return caught.value.errors


def test_defaults_follow_the_product_spec():
    core = CoreSettings.from_config({})
    assert core == CoreSettings.from_config(None)
    assert (core.starting_cash, core.currency, core.slippage_bps, core.allow_short, core.max_leverage) == (
        Decimal(100000), "USD", 0, False, 1
    )
    assert core.commission == Commission() and core.commission.is_free
    assert (core.max_order_value, core.max_position_value, core.max_volume_participation, core.benchmark) == (None,) * 4
    assert (core.log_level, core.handler_timeout_seconds) == ("INFO", 5.0)


def test_a_full_config_is_parsed_exactly():
    core = CoreSettings.from_config({
        "starting_cash": "250000.5", "currency": "usd", "commission": {"per_share": "0.005", "minimum": "1.00"},
        "slippage_bps": 2, "allow_short": True, "max_leverage": 2.5, "max_order_value": 50000, "max_position_value": "100000",
        "max_volume_participation": 0.1, "log_level": "debug", "benchmark": {"symbol": "spx", "asset_type": "EQUITY"},
        "handler_timeout_seconds": 2,
    })
    assert core.starting_cash == Decimal("250000.5") and core.currency == "USD"
    assert core.commission == Commission(per_share=Decimal("0.005"), minimum=Decimal("1.00"))
    assert core.max_leverage == Decimal("2.5") and core.max_volume_participation == Decimal("0.1")
    assert core.benchmark == Benchmark("SPX", AssetType.EQUITY)
    symbol, asset_type = core.benchmark  # the runner unpacks it
    assert (symbol, asset_type) == ("SPX", AssetType.EQUITY)
    assert CoreSettings.from_config({"benchmark": "spx"}).benchmark == Benchmark("SPX", AssetType.EQUITY)
    assert CoreSettings.from_config({"commission": {"bps": "1.5"}}).commission == Commission(bps=Decimal("1.5"))


def test_each_bad_field_gets_a_message_naming_the_fix():
    errors = errors_of({
        "starting_cash": -1, "currency": "dollars", "slippage_bps": "lots", "allow_short": "yes", "max_leverage": 0,
        "max_volume_participation": 1.5, "log_level": "LOUD", "handler_timeout_seconds": 0, "colour": "blue",
    })
    assert errors == {
        "starting_cash": "must be greater than 0, e.g. 100000",
        "currency": "must be a three-letter currency code, e.g. USD",
        "slippage_bps": "'lots' is not a number: enter a number, e.g. 2",
        "allow_short": "must be true or false",
        "max_leverage": "must be greater than 0, e.g. 1.0",
        "max_volume_participation": "must be at most 1, e.g. 0.1",
        "log_level": "must be one of DEBUG, INFO, WARNING, ERROR",
        "handler_timeout_seconds": "must be more than 0 and at most 3600 seconds, e.g. 5",
        "colour": (
            "unknown setting: remove it (known settings: starting_cash, currency, commission, slippage_bps, allow_short, "
            "max_leverage, max_order_value, max_position_value, max_volume_participation, log_level, benchmark, "
            "handler_timeout_seconds)"
        ),
    }
    assert isinstance(errors_of({"starting_cash": True})["starting_cash"], str)


@pytest.mark.parametrize(
    ("commission", "expected"),
    [
        ({"per_share": "0.005", "bps": 1}, {"commission": "choose one model: per_share (with minimum) or bps, not both"}),
        ({"minimum": 1}, {"commission.per_share": "is required with minimum, e.g. 0.005"}),
        ({"per_share": -1}, {"commission.per_share": "must not be negative, e.g. 0.005"}),
        ({"flat": 5}, {"commission.flat": "unknown commission field: use per_share (with minimum) or bps"}),
        ("5", {"commission": 'must be an object: {"per_share": "0.005", "minimum": "1.00"} or {"bps": "1.0"}'}),
    ],
)
def test_commission_errors(commission, expected):
    assert errors_of({"commission": commission}) == expected


def test_the_json_schema_describes_exactly_the_accepted_settings_with_valid_defaults():
    schema = CoreSettings.json_schema()
    Draft7Validator.check_schema(schema)
    properties = schema["properties"]
    assert list(properties) == [
        "starting_cash", "currency", "commission", "slippage_bps", "allow_short", "max_leverage", "max_order_value",
        "max_position_value", "max_volume_participation", "log_level", "benchmark", "handler_timeout_seconds",
    ]
    assert all(prop.get("title") and prop.get("description") and "default" in prop for prop in properties.values())
    defaults = {name: prop["default"] for name, prop in properties.items()}
    assert CoreSettings.from_config(defaults) == CoreSettings()
    validator = Draft7Validator(schema)
    good = {"starting_cash": 5000, "commission": {"per_share": 0.005, "minimum": 1}, "benchmark": "SPX", "max_order_value": None}
    assert list(validator.iter_errors(good)) == []
    CoreSettings.from_config(good)
    assert list(validator.iter_errors({"colour": "blue"}))
