"""Batch backtests from the command line — an interface other tools script against.

    manage.py backtest --strategy "SMA Crossover" --start 2010-01-04 --end 2017-11-10 \\
        --param symbol=MSFT --param fast=10 --core starting_cash=50000 [--json] [--via-worker]
    manage.py backtest --file batch.json [--json]

`--json` prints one JSON object per run on its own line. The exit status is 1 when any run
ends in `error`, 2 for bad arguments or input (nothing is run then).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connections, transaction

from portfolio.models import Fill, Order
from runs.config import RunConfigError
from runs.execution import run_execute
from runs.models import Run, Status
from runs.services import RunActionError, run_create, run_start
from strategies.models import Strategy, StrategyVersion

FINISHED = (Status.COMPLETE, Status.STOPPED, Status.ERROR)
SPEC_KEYS = ("strategy", "version", "start", "end", "params", "core", "description")


class UsageError(CommandError):
    """Bad input: exit status 2, so a script can tell it from a run that ended in `error` (1)."""

    def __init__(self, message):
        super().__init__(message, returncode=2)


def parse_assignments(pairs: list[str], *, option: str) -> dict:
    """k=v pairs into a dict; values read as JSON when they parse (10, 1.5, true, null),
    otherwise as text; dotted keys nest (commission.bps=1)."""
    result: dict = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} {pair!r}: expected NAME=VALUE, e.g. {option} fast=10")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        target = result
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return result


def resolve_version(strategy_ref, version_number=None) -> StrategyVersion:
    strategy_ref = str(strategy_ref)
    strategy = Strategy.objects.filter(name=strategy_ref).first()
    if strategy is None and strategy_ref.isdigit():
        strategy = Strategy.objects.filter(pk=int(strategy_ref)).first()
    if strategy is None:
        names = ", ".join(Strategy.objects.values_list("name", flat=True)[:20])
        raise UsageError(f"--strategy {strategy_ref!r}: no such strategy (by name or id). Known: {names}")
    versions = strategy.versions.order_by("-number")
    version = versions.filter(number=version_number).first() if version_number is not None else versions.first()
    if version is None:
        raise UsageError(
            f"--version {version_number}: {strategy.name} has no such version" if version_number is not None else f"{strategy.name} has no published version: publish it first"
        )
    return version


class Command(BaseCommand):
    help = "Run one backtest, or a batch from a JSON file, and print the results."
    # A scripting interface started once per backtest: Django's system checks (they import
    # every URL module) are left to migrate and runserver, as for Django's own shell.
    requires_system_checks = []

    def run_from_argv(self, argv):
        """Started as its own process (call_command does not come here): once the results are
        out, the process ends without tearing the interpreter down. Freeing a long run's
        objects one by one, and collecting the cycles among them, took a third of a second of
        a seven-second backtest; the operating system reclaims the memory at once. For the same
        reason the cyclic garbage collector is left off: the engine pauses it during a run anyway,
        and turned back on, its first pass walked every object the run had made (0.1–0.2 s).
        Between the runs of a batch the garbage is collected (`handle`)."""
        gc.disable()
        try:
            super().run_from_argv(argv)
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
        connections.close_all()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)

    def create_parser(self, prog_name, subcommand, **kwargs):
        # Our --version is the strategy version; it replaces Django's own --version flag here.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--strategy", help="Strategy name or id.")
        parser.add_argument("--version", type=int, help="Strategy version number (default: the latest).")
        parser.add_argument("--start", help="First session (YYYY-MM-DD) or ISO datetime.")
        parser.add_argument("--end", help="Last session, inclusive (YYYY-MM-DD), or ISO datetime.")
        parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="A strategy parameter (repeatable).")
        parser.add_argument("--core", action="append", default=[], metavar="NAME=VALUE", help="A core setting, e.g. starting_cash=50000, commission.bps=1 (repeatable).")
        parser.add_argument("--description", help="Run description (default: made from the strategy and dates).")
        parser.add_argument("--file", type=Path, help='A JSON list of runs: [{"strategy": ..., "version": ..., "start": ..., "end": ..., "params": {...}, "core": {...}}].')
        parser.add_argument("--json", action="store_true", help="Print one JSON object per run.")
        parser.add_argument("--via-worker", action="store_true", help="Queue the runs for the Celery workers and wait, instead of running here.")

    def handle(self, *args, **options):
        specs = self.load_specs(options)
        # All or none: a batch refused at its third run leaves no run of it behind (nor queued).
        with transaction.atomic():
            runs = [self.create_run(spec, index=i, via_worker=options["via_worker"]) for i, spec in enumerate(specs)]
        results = []
        progress = self.progress_bar(len(runs), options)
        for number, (run, started) in enumerate(runs, start=1):
            if options["via_worker"]:
                result = self.wait_for(run, started)
            else:
                started = time.monotonic()  # this run's own time, not the batch's so far
                run_execute(run_id=run.pk)
                result = self.result_of(run, started)
                if not gc.isenabled() and number < len(runs):
                    gc.collect()  # the collector is off in this process (run_from_argv): the run's cycles go before the next run
            results.append(result)
            if options["json"]:
                self.stdout.write(json.dumps(result, default=str))
            if progress is not None:
                progress.update(1)
        if progress is not None:
            progress.close()
        if not options["json"]:
            self.print_table(results)
        if any(result["status"] == Status.ERROR for result in results):
            sys.exit(1)

    def load_specs(self, options) -> list[dict]:
        if options["file"]:
            try:
                specs = json.loads(options["file"].read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise UsageError(f"--file {options['file']}: {exc}") from None
            if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
                raise UsageError(f"--file {options['file']}: expected a JSON list of objects")
            for index, spec in enumerate(specs):
                if unknown := sorted(set(spec) - set(SPEC_KEYS)):
                    raise UsageError(f"--file {options['file']}: run {index + 1}: unknown key {', '.join(unknown)} (known: {', '.join(SPEC_KEYS)})")
            return specs
        missing = [name for name in ("strategy", "start", "end") if not options[name]]
        if missing:
            raise UsageError("missing " + ", ".join(f"--{name}" for name in missing) + " (or use --file)")
        return [
            {
                "strategy": options["strategy"],
                "version": options["version"],
                "start": options["start"],
                "end": options["end"],
                "params": parse_assignments(options["param"], option="--param"),
                "core": parse_assignments(options["core"], option="--core"),
                "description": options["description"],
            }
        ]

    def create_run(self, spec: dict, *, index: int, via_worker: bool) -> tuple[Run, float]:
        where = f"run {index + 1}"
        version = resolve_version(spec.get("strategy"), spec.get("version"))
        description = spec.get("description") or f"CLI: {version.strategy.name} v{version.number} {spec.get('start')}..{spec.get('end')}"
        config = {
            "environment": {"start": spec.get("start"), "end": spec.get("end")},
            "strategy": spec.get("params") or {},
            "core": spec.get("core") or {},
        }
        try:
            with transaction.atomic():
                run = run_create(user=None, strategy_version=version, description=description, config=config)
                run = run_start(run=run, user=None, enqueue=via_worker)
        except RunConfigError as exc:
            lines = "\n".join(f"  {key}: {message}" for key, message in exc.errors.items())
            raise UsageError(f"{where}: invalid config\n{lines}") from None
        except RunActionError as exc:
            raise UsageError(f"{where}: {exc}") from None
        return run, time.monotonic()

    def wait_for(self, run: Run, started: float) -> dict:
        while not Run.objects.filter(pk=run.pk, status__in=FINISHED).exists():
            time.sleep(0.5)
        return self.result_of(run, started)

    def result_of(self, run: Run, started: float) -> dict:
        run.refresh_from_db()
        metrics = dict(run.metrics or {})
        metrics.setdefault("final_value", float(run.portfolio_value) if run.portfolio_value is not None else None)
        return {
            "run_id": run.pk,
            "status": run.status,
            "metrics": metrics,
            "orders": Order.objects.filter(run=run).count(),
            "fills": Fill.objects.filter(run=run).count(),
            "bars_processed": run.bars_processed,
            "seconds": round(time.monotonic() - started, 3),
            "issues": list(run.issues.values_list("code", flat=True)),
        }

    def progress_bar(self, total: int, options):
        if total < 2 or options["json"] or not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        return tqdm(total=total, unit="run", file=sys.stderr)

    def print_table(self, results: list[dict]) -> None:
        header = f"{'run':>6}  {'status':<9} {'final value':>14} {'return':>8} {'sharpe':>7} {'max dd':>8} {'trades':>6} {'bars':>9} {'seconds':>8}"
        self.stdout.write(header)
        for r in results:
            m = r["metrics"]

            def pct(value):
                return f"{value * 100:7.2f}%" if isinstance(value, int | float) else f"{'—':>8}"

            final = f"{m['final_value']:14,.2f}" if m.get("final_value") is not None else f"{'—':>14}"
            sharpe = f"{m['sharpe']:7.2f}" if isinstance(m.get("sharpe"), int | float) else f"{'—':>7}"
            self.stdout.write(
                f"{r['run_id']:>6}  {r['status']:<9} {final} {pct(m.get('total_return'))} {sharpe} {pct(m.get('max_drawdown'))} "
                f"{m.get('trades', 0) or 0:>6} {r['bars_processed']:>9} {r['seconds']:>8.2f}"
            )
            if r["issues"]:
                self.stdout.write(f"        issues: {', '.join(r['issues'])}")
