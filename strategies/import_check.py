"""Imports a strategy bundle in a child process for publish.

Publish has to run a bundle's module-level code to find its Strategy class. That code is the
author's: an endless loop or a huge allocation there must not hang or exhaust the web process
(which also holds the strategy's row lock while publishing). `bundle_import_check` runs this
module as `python -m strategies.import_check` with a time limit and a memory limit, hands it the
files as JSON on stdin, and reads back the problems `load_strategy` found, file and line as
before.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from strategies.bundle import STRATEGY_FILE, BundleError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULT_MARKER = "lookout-import-check-result:"  # the author's code may print too
MEMORY_LIMIT_BYTES = 4 * 1024**3


def bundle_import_check(*, files: dict[str, str], label: str, timeout_seconds: float) -> list[BundleError]:
    """The problems importing the bundle in isolation finds (none: it defines a usable Strategy)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "strategies.import_check"],
            input=json.dumps({"files": files, "label": label}),
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            cwd=PROJECT_ROOT,
            # Numeric libraries reserve address space per thread; one is plenty for an import.
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        )
    except subprocess.TimeoutExpired:
        return [
            BundleError(
                STRATEGY_FILE,
                None,
                f"importing the bundle took longer than {timeout_seconds:g} s: module-level code should only define "
                "things (classes, functions, constants); move slow work into on_start",
            )
        ]
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return [BundleError(file, line_number, message) for file, line_number, message in json.loads(line[len(RESULT_MARKER) :])]
    cause = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
    return [
        BundleError(
            STRATEGY_FILE,
            None,
            f"importing the bundle stopped the checking process ({cause[0][:200]}): module-level code must not exit "
            f"the process or use more than {MEMORY_LIMIT_BYTES // 1024**3} GB",
        )
    ]


def _check(payload: dict) -> list[list]:
    from strategies.loader import StrategyLoadError, load_strategy

    try:
        load_strategy(files=payload["files"], label=payload["label"])
    except StrategyLoadError as exc:
        return [[error.file, error.line, error.message] for error in exc.errors]
    return []


def main() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except (ImportError, ValueError, OSError):
        pass  # no limit where the platform has none to set
    payload = json.load(sys.stdin)
    result = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # what the bundle prints is not the result
        errors = _check(payload)
    result.write(RESULT_MARKER + json.dumps(errors) + os.linesep)
    result.flush()


if __name__ == "__main__":
    main()
