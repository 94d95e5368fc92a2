"""Optimize studies from the command line — for scripted sweeps.

    manage.py study --base-run 12 --sweep fast=5,10,20 --sweep slow=20:200:20 [--grid] \\
        [--description D] [--objective sharpe] [--direction max] [--json] [--inline]

Creates the study (every trial validated first), waits for the workers to finish it (or runs
the trials here with --inline), then prints the trial table, or one JSON object per trial with
--json. A progress bar goes to stderr when it is a terminal. Exit status 1 when the study ends
in error or every trial failed, 2 for bad arguments.
"""

from __future__ import annotations

import json
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from runs.models import Run, StudyStatus
from runs.services import RunActionError
from runs.studies import GRID, SWEEP
from runs.study_selectors import study_detail, study_trial_table
from runs.study_services import METRICS, StudyError, study_create, study_kill, study_start, study_trial_execute

TABLE_METRICS = ("total_return", "sharpe", "max_drawdown", "trades", "final_value")


def parse_sweeps(pairs: list[str]) -> dict[str, str]:
    """NAME=v1,v2 or NAME=start:stop:step, as written (the study parses them by type)."""
    space: dict[str, str] = {}
    for pair in pairs:
        name, sep, values = pair.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise CommandError(f"--sweep {pair!r}: expected NAME=v1,v2,... or NAME=start:stop:step, e.g. --sweep fast=5:50:5")
        if name.strip() in space:
            raise CommandError(f"--sweep {name.strip()}: given twice; put all its values in one --sweep")
        space[name.strip()] = values.strip()
    return space


class Command(BaseCommand):
    help = "Run an Optimize study of a Backtest run's parameters and print the trials."

    def add_arguments(self, parser):
        parser.add_argument("--base-run", type=int, required=True, help="Id of the Backtest run the trials vary.")
        parser.add_argument("--sweep", action="append", default=[], metavar="NAME=VALUES", help="A parameter and its values: v1,v2,... or start:stop:step (repeatable).")
        parser.add_argument("--grid", action="store_true", help="Every combination of the values instead of one parameter at a time.")
        parser.add_argument("--description", help="Study description (default: made from the sweeps).")
        parser.add_argument("--objective", default="sharpe", choices=METRICS, help="Metric that picks the best trial (default: sharpe).")
        parser.add_argument("--direction", default="max", choices=("max", "min"), help="Whether the highest or lowest objective is best (default: max).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object per trial.")
        parser.add_argument("--inline", action="store_true", help="Run the trials in this process instead of on the workers.")
        parser.add_argument("--timeout", type=float, default=3600, help="Seconds to wait for the workers (default 3600); the study is killed after that.")

    def handle(self, *args, **options):
        space = parse_sweeps(options["sweep"])
        if not space:
            raise CommandError("give at least one --sweep NAME=VALUES")
        base = Run.objects.select_related("strategy_version__strategy").filter(pk=options["base_run"]).first()
        if base is None:
            raise CommandError(f"--base-run {options['base_run']}: no such run")
        mode = GRID if options["grid"] else SWEEP
        description = options["description"] or f"CLI {mode}: " + " ".join(f"{name}={values}" for name, values in space.items())
        try:
            study = study_create(
                user=None, base_run=base, description=description, space_spec=space, mode=mode,
                objective_metric=options["objective"], objective_direction=options["direction"], start=False,
            )
        except StudyError as exc:
            lines = "\n".join(f"  {key}: {message}" for key, message in exc.errors.items())
            raise CommandError(f"the study cannot be created:\n{lines}") from None

        study = study_start(study=study, user=None, enqueue=not options["inline"])
        progress = self.progress_bar(study.trial_count)
        if options["inline"]:
            for run_id in Run.objects.filter(study_id=study.pk).order_by("pk").values_list("pk", flat=True):
                study_trial_execute(run_id=run_id, study_id=study.pk)
                if progress is not None:
                    progress.update(1)
        else:
            self.wait_for(study.pk, progress, timeout=options["timeout"])
        if progress is not None:
            progress.close()
        study = study_detail(study_id=study.pk)
        table = study_trial_table(study=study)
        self.report(study, table, as_json=options["json"])
        if study.status == StudyStatus.ERROR:
            sys.exit(1)

    def progress_bar(self, total: int):
        if not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        return tqdm(total=total, unit="trial", file=sys.stderr)

    def wait_for(self, study_id: int, progress, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        shown = 0
        while True:
            study = study_detail(study_id=study_id)
            if progress is not None and study.finished_trials > shown:
                progress.update(study.finished_trials - shown)
                shown = study.finished_trials
            if study.is_finished:
                return
            if time.monotonic() > deadline:
                try:
                    study_kill(study=study, user=None)
                except RunActionError:
                    pass
                raise CommandError(f"study {study_id}: not finished after {timeout:.0f} s; killed. Are workers consuming the 'studies' queue?")
            time.sleep(0.25)

    def report(self, study, table, *, as_json: bool) -> None:
        if as_json:
            for row in sorted(table.rows, key=lambda row: row.run.pk):
                self.stdout.write(json.dumps({
                    "study": study.pk, "run": row.run.pk, "status": row.run.status, "baseline": row.baseline, "best": row.best,
                    "parameters": row.values, "metrics": {name: row.metrics.get(name) for name in METRICS},
                }, default=str))
            return
        headers = ["run", *table.parameters, *TABLE_METRICS, "status", ""]
        lines = [headers]
        for row in sorted(table.rows, key=lambda row: row.run.pk):
            metrics = [row.metrics.get(name) for name in TABLE_METRICS]
            lines.append([
                str(row.run.pk), *(str(row.values[name]) for name in table.parameters),
                *("" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value) for value in metrics),
                row.run.status, ("best" if row.best else "") + (" baseline" if row.baseline else ""),
            ])
        widths = [max(len(line[index]) for line in lines) for index in range(len(headers))]
        for line in lines:
            self.stdout.write("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        finished = sum(1 for row in table.rows if row.run.is_finished)
        self.stdout.write(f"study {study.pk}: {study.status}, {finished}/{study.trial_count} trials finished, objective {study.objective_metric} {study.objective_direction}")
