"""Trial generation (runs/studies.py): values written as lists and ranges, one-at-a-time sweeps
and grids, and the refusals."""

import pytest

from runs.studies import (
    GRID,
    MAX_TRIALS,
    SWEEP,
    SearchSpaceError,
    range_values,
    search_space_parse,
    trials_count,
    trials_generate,
    values_parse,
)
from strategies.schema import Parameter

FAST = Parameter(name="fast", kind="integer", json_type="integer", title="Fast", default=10)
SLOW = Parameter(name="slow", kind="integer", json_type="integer", title="Slow", default=20)
RATE = Parameter(name="rate", kind="decimal", json_type="number", title="Rate", default=0.5)
SYMBOL = Parameter(name="symbol", kind="symbol", json_type="string", title="Symbol", asset_type="EQUITY")
LONG_ONLY = Parameter(name="long_only", kind="boolean", json_type="boolean", title="Long only", default=True)
MODE = Parameter(name="mode", kind="choice", json_type="string", title="Mode", choices=("fast", "slow"))
PINNED = Parameter(name="frequency", kind="bar_frequency", json_type="string", title="Frequency", pinned_frequency="day", frequency_choices=("day",))


def test_a_decimal_range_steps_exactly_and_includes_its_stop():
    assert range_values(start="0.1", stop="0.7", step="0.1", integer=False) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def test_an_integer_range_includes_the_stop_when_the_steps_land_on_it_only():
    assert range_values(start=5, stop=50, step=5, integer=True) == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert range_values(start=20, stop=55, step=20, integer=True) == [20, 40]


@pytest.mark.parametrize(
    ("start", "stop", "step", "integer", "message"),
    [
        (1, 10, 0, True, "step must be greater than 0"),
        (10, 1, 1, True, "must not be below start"),
        ("1", "2", "0.5", True, "whole numbers"),
        ("a", "2", "1", False, "start 'a' is not a number"),
        (0, 100000, 1, True, "more than 500"),
    ],
)
def test_bad_ranges_are_refused_with_the_fix(start, stop, step, integer, message):
    with pytest.raises(ValueError, match=message):
        range_values(start=start, stop=stop, step=step, integer=integer)


def test_values_parse_reads_lists_ranges_and_json_lists_by_type():
    assert values_parse(FAST, "5, 10,20, 10") == [5, 10, 20]
    assert values_parse(FAST, "5:15:5") == [5, 10, 15]
    assert values_parse(RATE, "0.1:0.3:0.1") == [0.1, 0.2, 0.3]
    assert values_parse(RATE, [0.25, "1.5"]) == [0.25, 1.5]
    assert values_parse(SYMBOL, "msft, aapl") == ["MSFT", "AAPL"]
    assert values_parse(LONG_ONLY, ["true", "false"]) == [True, False]
    assert values_parse(MODE, ["slow"]) == ["slow"]


@pytest.mark.parametrize(
    ("parameter", "spec", "message"),
    [
        (FAST, "", "no values"),
        (FAST, " , ", "no values"),
        (FAST, "5, ten", "'ten' is not a number"),
        (FAST, "2.5", "2.5 is not a whole number"),
        (FAST, "1:5", "a range is start:stop:step"),
        (LONG_ONLY, ["maybe"], "'maybe' is not true or false"),
        (FAST, [], "no values"),
    ],
)
def test_empty_and_invalid_values_are_refused(parameter, spec, message):
    with pytest.raises(ValueError, match=message):
        values_parse(parameter, spec)


def test_search_space_parse_names_every_bad_parameter_at_once():
    with pytest.raises(SearchSpaceError) as caught:
        search_space_parse(parameters=[FAST, SLOW, PINNED], spec={"fast": "x", "slow": "", "frequency": ["day"], "nope": "1"})
    assert set(caught.value.errors) == {"fast", "slow", "frequency", "nope"}
    assert "pinned to day" in caught.value.errors["frequency"]
    assert "unknown parameter" in caught.value.errors["nope"]


def test_an_empty_search_space_is_refused():
    with pytest.raises(SearchSpaceError, match="nothing to vary"):
        search_space_parse(parameters=[FAST, SLOW], spec={})


def test_search_space_parse_keeps_the_strategys_parameter_order():
    space = search_space_parse(parameters=[FAST, SLOW], spec={"slow": "30", "fast": "5"})
    assert list(space) == ["fast", "slow"]


def test_a_sweep_is_the_baseline_then_one_trial_per_value_leaving_out_the_base_value():
    trials = trials_generate(base_values={"fast": 10, "slow": 20}, space={"fast": [5, 10, 15], "slow": [20, 40]}, mode=SWEEP)
    assert [trial.overrides for trial in trials] == [{}, {"fast": 5}, {"fast": 15}, {"slow": 40}]
    assert [trial.baseline for trial in trials] == [True, False, False, False]
    assert trials[0].label == "baseline" and trials[1].label == "fast=5"


def test_a_grid_is_every_combination_with_the_base_combination_marked():
    trials = trials_generate(base_values={"fast": 10, "slow": 20}, space={"fast": [5, 10], "slow": [20, 40, 60]}, mode=GRID)
    assert len(trials) == 6
    assert [trial.overrides for trial in trials][:3] == [{"fast": 5, "slow": 20}, {"fast": 5, "slow": 40}, {"fast": 5, "slow": 60}]
    assert [trial.overrides for trial in trials if trial.baseline] == [{"fast": 10, "slow": 20}]


def test_absurd_sizes_are_refused_before_any_trial_is_built():
    space = {"fast": list(range(1, 31)), "slow": list(range(100, 120))}
    assert trials_count(base_values={}, space=space, mode=GRID) == 600
    with pytest.raises(SearchSpaceError, match=f"600 trials is more than the {MAX_TRIALS}"):
        trials_generate(base_values={}, space=space, mode=GRID)
    assert len(trials_generate(base_values={}, space=space, mode=SWEEP)) == 51


def test_a_sweep_whose_values_all_equal_the_base_is_refused():
    with pytest.raises(SearchSpaceError, match="only repeat the baseline"):
        trials_generate(base_values={"fast": 10}, space={"fast": [10]}, mode=SWEEP)


def test_an_unknown_study_type_is_refused():
    with pytest.raises(SearchSpaceError, match="unknown study type"):
        trials_generate(base_values={}, space={"fast": [1]}, mode="random")
