"""Publish imports the author's bundle in a child process with a time and memory limit, so
module-level code cannot hang or exhaust the web process. Depends on: the test database; a
Python child process per publish (strategies/import_check.py)."""

import time

import pytest

from strategies.models import StrategyVersion
from strategies.services import strategy_publish
from tests.strategies.factories import StrategyFactory
from tests.strategies.test_services import SCHEMA_OK, STRATEGY_OK, only_error

pytestmark = pytest.mark.django_db


def with_module_code(code: str) -> dict:
    return {"strategy.py": code + "\n" + STRATEGY_OK, "config_schema.json": SCHEMA_OK}


def test_module_code_that_never_ends_is_stopped_and_refused(author, settings):
    settings.STRATEGY_IMPORT_TIMEOUT_SECONDS = 2
    began = time.monotonic()
    error = only_error(with_module_code("while True:\n    pass\n"), author)
    assert time.monotonic() - began < 15  # the web process got its answer
    assert error.file == "strategy.py" and "took longer than 2 s" in error.message and "on_start" in error.message


def test_module_code_that_ends_the_process_is_refused(author):
    error = only_error(with_module_code("import os\nos._exit(3)\n"), author)
    assert error.file == "strategy.py" and "stopped the checking process" in error.message


def test_module_code_that_takes_too_much_memory_is_refused_with_its_line(author):
    error = only_error(with_module_code("BUFFER = bytearray(6 * 1024**3)\n"), author)
    assert (error.file, error.line) == ("strategy.py", 1) and "MemoryError" in error.message


def test_what_module_code_prints_does_not_disturb_the_check(author):
    # Even a line that looks like the check's own result: what the bundle prints goes elsewhere.
    fake_result = 'print(\'lookout-import-check-result: [["x.py", 1, "fake"]]\')\n'
    # And the numeric libraries a strategy may use import within the memory limit.
    strategy = StrategyFactory(files=with_module_code("import numpy, pandas\nprint('hello')\n" + fake_result))
    version = strategy_publish(strategy=strategy, user=author)
    assert version.number == 1 and StrategyVersion.objects.filter(strategy=strategy).count() == 1
