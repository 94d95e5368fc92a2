"""Optimize speed: a 100-trial grid study of the SMA Crossover example on MSFT daily bars, from
submit (study_create) to every trial's results stored, on a Celery worker with 2 processes on
the `studies` queue, against backtesting.py's Backtest.optimize (which forks one process per
core) on the same grid, data and rules (long-only, all-in at the next open, exit on the cross
down). Runs against a scratch database: PostgreSQL `lookout_bench_optimize` and Redis db 13 when
reachable, else SQLite and the filesystem broker under var/bench-optimize."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--profile", action="store_true", help="Also profile one trial in-process with pyinstrument.")
parser.add_argument("--concurrency", type=int, default=2)
parser.add_argument("--sqlite", action="store_true", help="Use SQLite and the filesystem broker even when PostgreSQL and Redis are reachable.")
args = parser.parse_args()

FAST = list(range(5, 51, 5))
SLOW = list(range(20, 201, 20))
START, END = "1986-03-13", "2017-11-10"
VAR_DIR = ROOT / "var" / "bench-optimize"
DB_NAME = "lookout_bench_optimize"


def reachable(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


shutil.rmtree(VAR_DIR, ignore_errors=True)
VAR_DIR.mkdir(parents=True)
env = {**os.environ, "DEBUG": "false", "SECRET_KEY": "bench-optimize-not-secret", "LOOKOUT_VAR_DIR": str(VAR_DIR), "PYTHONUNBUFFERED": "1"}
for name in ("DATABASE_URL", "CELERY_BROKER_URL"):
    env.pop(name, None)  # the scratch database only, never one set in the caller's environment
if not args.sqlite and reachable(["pg_isready", "-h", "127.0.0.1", "-p", "5432"]):
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB_NAME], check=True, capture_output=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB_NAME], check=True, capture_output=True)
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
if not args.sqlite and reachable(["redis-cli", "-h", "127.0.0.1", "-n", "13", "flushdb"]):
    env["CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/13"
os.environ.clear()
os.environ.update(env)
backend = f"{'PostgreSQL' if 'DATABASE_URL' in env else 'SQLite'} + {'Redis' if 'CELERY_BROKER_URL' in env else 'filesystem broker'}"

subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)

import django  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

import pandas as pd  # noqa: E402
from backtesting import Backtest, Strategy  # noqa: E402
from backtesting.lib import crossover  # noqa: E402

from runs.models import Run, Status, Study, StudyStatus  # noqa: E402
from runs.services import run_create  # noqa: E402
from runs.studies import GRID  # noqa: E402
from runs.study_services import study_create  # noqa: E402
from securities.services import bars_import, security_import_csv  # noqa: E402
from strategies.services import strategy_publish_folder  # noqa: E402

DATA = ROOT / "securities" / "data"
security_import_csv(file=DATA / "us_equities.csv", default_asset_type="equity")
bars_import(file=DATA / "MSFT_1d.csv.gz", symbol="MSFT", asset_type="equity", frequency="day", source="MSFT_1d.csv.gz")
version = strategy_publish_folder(folder=ROOT / "strategies" / "examples" / "sma_crossover", name="SMA Crossover", message="bench")
base = run_create(
    user=None, strategy_version=version, description="bench base",
    config={"environment": {"start": START, "end": END}, "strategy": {"symbol": "MSFT", "fast": 10, "slow": 20, "frequency": "day"}, "core": {}},
)

worker_log = VAR_DIR / "worker.log"
with open(worker_log, "w") as log:
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--queues", "studies", "--concurrency", str(args.concurrency),
         "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", f"bench-optimize-{os.getpid()}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
try:
    # Ready when the worker answers a ping; the fork pool is warm after that.
    from config.celery import app

    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=1.0, destination=[f"bench-optimize-{os.getpid()}@{os.uname().nodename}"]):
        if worker.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the worker did not start:\n{worker_log.read_text()}")
        time.sleep(0.5)

    submitted = time.perf_counter()
    study = study_create(
        user=None, base_run=base, description="bench grid", space_spec={"fast": FAST, "slow": SLOW}, mode=GRID, objective_metric="sharpe",
    )
    created = time.perf_counter() - submitted
    while not Study.objects.filter(pk=study.pk, status__in=[StudyStatus.COMPLETE, StudyStatus.ERROR, StudyStatus.STOPPED]).exists():
        if worker.poll() is not None:
            sys.exit(f"the worker died:\n{worker_log.read_text()}")
        time.sleep(0.05)
    ours = time.perf_counter() - submitted
finally:
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=30)

study.refresh_from_db()
trials = Run.objects.filter(study=study)
statuses = {status: trials.filter(status=status).count() for status in Status.values if trials.filter(status=status).exists()}
assert study.status == StudyStatus.COMPLETE and statuses == {Status.COMPLETE: 100}, (study.status, statuses, worker_log.read_text()[-3000:])
best = max(trials, key=lambda run: run.metrics.get("sharpe") or float("-inf"))

frame = pd.read_csv(DATA / "MSFT_1d.csv.gz", parse_dates=["date"], index_col="date")
frame.columns = [name.capitalize() for name in frame.columns]


def sma(values, window):
    return pd.Series(values).rolling(window).mean()


class SmaCross(Strategy):
    fast = 10
    slow = 20

    def init(self):
        self.fast_sma = self.I(sma, self.data.Close, self.fast)
        self.slow_sma = self.I(sma, self.data.Close, self.slow)

    def next(self):
        if crossover(self.fast_sma, self.slow_sma) and not self.position:
            self.buy()
        elif crossover(self.slow_sma, self.fast_sma) and self.position:
            self.position.close()


started = time.perf_counter()
with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # its progress bars
    stats, heatmap = Backtest(frame, SmaCross, cash=100_000, commission=0.0, finalize_trades=True).optimize(
        fast=FAST, slow=SLOW, maximize="Sharpe Ratio", method="grid", return_heatmap=True,
    )
theirs = time.perf_counter() - started

print(f"backend: {backend}; worker processes: {args.concurrency}; bars per trial: {len(frame)}; trials: {study.trial_count}")
print(f"lookout study (submit → 100 trials stored): {ours:.2f} s  (create + validate: {created:.2f} s; {ours / 100 * args.concurrency:.3f} s per trial per process)")
print(f"backtesting.py Backtest.optimize:           {theirs:.2f} s  ({len(heatmap)} combinations)")
print(f"ratio lookout / backtesting.py: {ours / theirs:.2f}x ({'slower' if ours > theirs else 'faster or equal'})")
print(f"best by sharpe: lookout fast={best.config['strategy']['fast']} slow={best.config['strategy']['slow']} ({best.metrics['sharpe']:.3f}); "
      f"backtesting.py fast={stats._strategy.fast} slow={stats._strategy.slow} ({stats['Sharpe Ratio']:.3f})")

if args.profile:
    from pyinstrument import Profiler

    from runs.services import run_start
    from runs.study_services import study_trial_execute

    # The second of two trials: a worker process's first trial also builds the exchange
    # calendar for the window (cached per process after that).
    for fast in (25, 30):
        run = run_create(user=None, strategy_version=version, description="profiled trial", config={**base.config, "strategy": {**base.config["strategy"], "fast": fast, "slow": 100}})
        run_start(run=run, user=None, enqueue=False)
        profiler = Profiler()
        profiler.start()
        study_trial_execute(run_id=run.pk, study_id=study.pk)
        profiler.stop()
    print(profiler.output_text(unicode=False, color=False, show_all=False)[:8000])
