import linecache
import sys
import threading
import traceback

import pytest

from strategies.loader import StrategyLoadError, load_strategy, load_version
from strategies.sdk import StrategyBase
from tests.strategies.factories import StrategyFactory, StrategyVersionFactory, bundle_files


def test_two_versions_with_different_helpers_each_see_their_own():
    first = load_strategy(files=bundle_files("crossover_a"), label="crossover@1")
    second = load_strategy(files=bundle_files("crossover_b"), label="crossover@2")

    assert first.module.signal_source() == ("a", "a")
    assert second.module.signal_source() == ("b", "b")
    assert first.module.crossover is not second.module.crossover
    # The global module table is untouched, so nothing leaks to the next load.
    assert "signals" not in sys.modules and not [name for name in sys.modules if name.startswith("lookout://")]
    assert issubclass(first.strategy_class, StrategyBase) and first.strategy_class is not second.strategy_class


def test_the_bundle_helper_wins_over_an_installed_module_of_the_same_name():
    files = {
        "strategy.py": "import json\nfrom strategies.sdk import StrategyBase\nclass Strategy(StrategyBase):\n    def on_start(self, now):\n        return []\n",
        "json.py": "SOURCE = 'bundle'\n",
    }
    loaded = load_strategy(files=files, label="shadow@1")
    assert loaded.module.json.SOURCE == "bundle"
    import json

    assert not hasattr(json, "SOURCE")


def test_dataclasses_with_postponed_annotations_work_in_helpers():
    files = {
        "strategy.py": (
            "from __future__ import annotations\n"
            "from dataclasses import dataclass, field\n"
            "from model import Side, Signal\n"
            "from strategies.sdk import StrategyBase\n\n"
            "@dataclass\n"
            "class State:\n"
            "    closes: list[float] = field(default_factory=list)\n\n"
            "class Strategy(StrategyBase):\n"
            "    def on_start(self, now):\n"
            "        return [Signal(Side.BUY, State().closes)]\n"
        ),
        "model.py": (
            "from __future__ import annotations\n"
            "import enum\n"
            "from dataclasses import dataclass\n\n"
            "class Side(enum.Enum):\n"
            "    BUY = 'buy'\n\n"
            "@dataclass(frozen=True)\n"
            "class Signal:\n"
            "    side: Side\n"
            "    closes: list[float]\n"
        ),
    }
    loaded = load_strategy(files=files, label="typed@1")
    [signal] = loaded.strategy_class(None, {}).on_start(None)
    assert signal.side.value == "buy" and signal.closes == []
    assert type(signal).__module__ == "lookout://typed@1/model"


def test_loads_in_parallel_threads_stay_apart():
    results = {}

    def load(name):
        loaded = load_strategy(files=bundle_files(name), label=f"{name}@1")
        results[name] = loaded.module.signal_source()

    threads = [threading.Thread(target=load, args=(name,)) for name in ("crossover_a", "crossover_b") * 5]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"crossover_a": ("a", "a"), "crossover_b": ("b", "b")}


def test_traceback_frames_carry_the_file_prefix_and_show_the_source():
    loaded = load_strategy(files=bundle_files("crossover_a"), label="crossover@7")
    assert loaded.file_prefix == "lookout://crossover@7/"
    signals = loaded.module.signals
    with pytest.raises(KeyError) as caught:
        signals.explode()
    frames = traceback.extract_tb(caught.value.__traceback__)
    bundle_frames = [frame for frame in frames if frame.filename.startswith(loaded.file_prefix)]
    assert [frame.filename for frame in bundle_frames] == ["lookout://crossover@7/signals.py"]
    assert bundle_frames[0].lineno == 17 and bundle_frames[0].line == 'return {}["missing"]'


def test_source_lines_survive_a_cleared_linecache():
    loaded = load_strategy(files=bundle_files("crossover_a"), label="crossover@8")
    linecache.clearcache()
    with pytest.raises(KeyError) as caught:
        loaded.module.signals.explode()
    frame = traceback.extract_tb(caught.value.__traceback__)[-1]
    assert frame.filename == "lookout://crossover@8/signals.py" and frame.line == 'return {}["missing"]'


def test_syntax_errors_in_every_module_are_reported_with_file_and_line():
    files = {**bundle_files("crossover_a"), "signals.py": "def broken(:\n    pass\n", "extra.py": "x = 1\ny = (\n"}
    with pytest.raises(StrategyLoadError) as caught:
        load_strategy(files=files, label="broken@1")
    where = [(error.file, error.line) for error in caught.value.errors]
    assert where == [("extra.py", 2), ("signals.py", 1)]
    assert all("syntax error" in error.message for error in caught.value.errors)


@pytest.mark.parametrize(
    "strategy_source, line, fragment",
    [
        ("from strategies.sdk import StrategyBase\n\nLIMIT = 1 / 0\n", 3, "raised ZeroDivisionError: division by zero"),
        ("import not_a_module_anywhere\n", 1, "imports 'not_a_module_anywhere', which is neither a file of this bundle nor an installed package"),
        ("import sys\nsys.exit(2)\n", 2, "raised SystemExit"),
        ("x = 1\n", None, "defines no Strategy class"),
        ("def Strategy():\n    pass\n", 1, "Strategy is a function, not a class"),
        ("class Strategy:\n    def on_start(self, now):\n        return []\n", 1, "must subclass StrategyBase"),
        ("from strategies.sdk import StrategyBase\n\n\nclass Strategy(StrategyBase):\n    pass\n", 4, "does not define on_start"),
    ],
)
def test_import_and_class_shape_failures_name_file_line_and_fix(strategy_source, line, fragment):
    with pytest.raises(StrategyLoadError) as caught:
        load_strategy(files={"strategy.py": strategy_source}, label="bad@1")
    [error] = caught.value.errors
    assert (error.file, error.line) == ("strategy.py", line)
    assert fragment in error.message


def test_an_exception_inside_a_helper_at_import_points_at_the_helper():
    files = {**bundle_files("crossover_b"), "signals.py": "SOURCE = 'b'\n\nraise RuntimeError('no data')\n"}
    with pytest.raises(StrategyLoadError) as caught:
        load_strategy(files=files, label="bad@2")
    [error] = caught.value.errors
    assert (error.file, error.line) == ("signals.py", 3) and "RuntimeError: no data" in error.message


def test_a_strategy_inherited_from_a_helper_base_class_is_accepted():
    files = {
        "strategy.py": "from base import Strategy\n",
        "base.py": "from strategies.sdk import StrategyBase\nclass Strategy(StrategyBase):\n    def on_start(self, now):\n        return []\n",
    }
    assert load_strategy(files=files, label="inherit@1").strategy_class.__name__ == "Strategy"


@pytest.mark.django_db
def test_load_version_labels_by_slug_and_number_and_runs_modules_afresh():
    version = StrategyVersionFactory(
        strategy=StrategyFactory(name="Crossover Test"), files=bundle_files("crossover_a"), number=3
    )
    first, second = load_version(version), load_version(version)
    assert first.file_prefix == "lookout://crossover-test@3/"
    # Fresh modules on each load: module-level state of one run never reaches the next.
    assert first.module is not second.module and first.strategy_class is not second.strategy_class
    assert first.module.signal_source() == ("a", "a")
