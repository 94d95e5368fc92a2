"""Console server time: the Performance tab's ten-second refresh of a run with 100,000 orders and
1,000,000 equity points, the runs list page with 10,000 runs, and the symbol check the New Run
dialog sends per keystroke, against the full security master. Each figure is the median of 20
requests through Django's test Client (logged in as an Operator) after a warm-up, printed with
its target, PASS/FAIL and target/measured. Runs against a scratch database: PostgreSQL
`lookout_bench_console` when reachable, else SQLite under var/bench-console. A failing target is
profiled with pyinstrument (the top of the call tree is printed)."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--sqlite", action="store_true", help="Use SQLite even when PostgreSQL is reachable.")
parser.add_argument("--profile", action="store_true", help="Profile every request kind, not only those over target.")
args = parser.parse_args()

VAR_DIR = ROOT / "var" / "bench-console"
DB_NAME = "lookout_bench_console"
RUNS = 10_000
ORDERS = 100_000
EQUITY_POINTS = 1_000_000
EQUITY_CHUNK = 100_000
REQUESTS = 20
WARM_UP = 3


def reachable(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


shutil.rmtree(VAR_DIR, ignore_errors=True)
VAR_DIR.mkdir(parents=True)
# Production settings (DEBUG off: no query log), served over plain HTTP to the test Client.
env = {
    **os.environ, "DEBUG": "false", "SECRET_KEY": "bench-console-not-secret", "ALLOWED_HOSTS": "testserver",
    "SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false",
    "LOOKOUT_VAR_DIR": str(VAR_DIR), "PYTHONUNBUFFERED": "1",
}
env.pop("DATABASE_URL", None)  # the scratch database only, never one set in the caller's environment
if not args.sqlite and reachable(["pg_isready", "-h", "127.0.0.1", "-p", "5432"]):
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB_NAME], check=True, capture_output=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB_NAME], check=True, capture_output=True)
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
os.environ.clear()
os.environ.update(env)
backend = "PostgreSQL" if "DATABASE_URL" in env else "SQLite"

subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)

import django  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

import numpy as np  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Sum  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from pyinstrument import Profiler  # noqa: E402

from portfolio.models import EquityChunk, Fill, LedgerEntry, Order, Position  # noqa: E402
from portfolio.services import OrderStatsChange, equity_append, order_stats_apply, rows_copy  # noqa: E402
from runs.models import Mode, Run, Status  # noqa: E402
from securities.services import security_import_csv  # noqa: E402
from strategies.services import strategy_publish_folder  # noqa: E402

DATA = ROOT / "securities" / "data"
T0 = datetime(2015, 1, 2, 14, 30, tzinfo=UTC)


def set_up() -> Run:
    """The security master, 10,000 runs, and the big run's results; returns the big run."""
    for name, asset_type in (("us_equities.csv", "equity"), ("us_etfs.csv", "equity"), ("us_futures.csv", "future")):
        security_import_csv(file=DATA / name, default_asset_type=asset_type)
    version = strategy_publish_folder(folder=ROOT / "strategies" / "examples" / "sma_crossover", name="SMA Crossover", message="bench")
    config = {"environment": {"start": "2015-01-02", "end": "2016-12-30"}, "strategy": {"symbol": "MSFT", "fast": 10, "slow": 20, "frequency": "day"}, "core": {}}
    statuses = [Status.COMPLETE] * 6 + [Status.STOPPED, Status.ERROR, Status.NEW, Status.RUNNING]
    runs = [
        Run(
            description=f"Bench run {n}", strategy_version=version, mode=Mode.BACKTEST, status=statuses[n % len(statuses)], config=config,
            portfolio_value=Decimal("100000") + n, pnl=Decimal(n % 500 - 250), progress=100,
        )
        for n in range(RUNS - 1)
    ]
    Run.objects.bulk_create(runs, batch_size=2000)
    big = Run.objects.create(
        description="Bench big run", strategy_version=version, mode=Mode.BACKTEST, status=Status.RUNNING, config=config,
        started_at=T0, portfolio_value=Decimal("123456.78"), pnl=Decimal("23456.78"), progress=60,
    )
    with transaction.atomic():
        order_rows, fill_rows, ledger_rows = [], [], []
        balance = Decimal("100000")
        for n in range(1, ORDERS + 1):
            moment = T0 + timedelta(minutes=n)
            filled = n % 5 != 0
            side = "buy" if n % 2 else "sell"
            order_rows.append((
                big.pk, n, f"r{big.pk}-{n}", "", "MSFT", "equity", side, side, "market", "day", Decimal(10), None, None,
                "filled" if filled else "cancelled", Decimal(10) if filled else Decimal(0), Decimal("62.5") if filled else None,
                Decimal("0.5"), "", "", moment, moment,
            ))
            if filled:
                amount = Decimal("-625.5") if side == "buy" else Decimal("624.5")
                balance += amount
                fill_rows.append((big.pk, n, f"x{n}", moment, "MSFT", "equity", side, Decimal(10), Decimal("62.5"), Decimal("0.5")))
                ledger_rows.append((big.pk, moment, "trade", amount, balance, n, f"order {n}"))
        rows_copy(
            model=Order,
            fields=("run", "order_id", "client_order_id", "broker_order_id", "symbol", "asset_type", "intent", "side", "order_type",
                    "time_in_force", "quantity", "limit_price", "stop_price", "state", "filled_quantity", "average_fill_price",
                    "commission", "reject_reason", "tag", "created_at", "updated_at"),
            rows=order_rows,
        )
        order_pks = dict(Order.objects.filter(run=big).values_list("order_id", "pk"))
        rows_copy(
            model=Fill, fields=("run", "order", "execution_id", "time", "symbol", "asset_type", "side", "quantity", "price", "commission"),
            rows=[(run_id, order_pks[order_id], *rest) for run_id, order_id, *rest in fill_rows],
        )
        rows_copy(model=LedgerEntry, fields=("run", "time", "kind", "amount", "balance", "order_id", "description"), rows=ledger_rows)
        # The statistics the recorder keeps on the run as it stores these orders and fills.
        order_stats = order_stats_apply({}, OrderStatsChange(
            states=Counter(row[13] for row in order_rows), fills=len(fill_rows),
            filled_quantity=sum(row[7] for row in fill_rows), commission=sum(row[9] for row in fill_rows),
        ))
        Run.objects.filter(pk=big.pk).update(order_stats=order_stats)
        Position.objects.create(run=big, symbol="MSFT", asset_type="equity", quantity=Decimal(100), average_price=Decimal("62.5"),
                                last_price=Decimal("63"), market_value=Decimal(6300), unrealized_pnl=Decimal(50), updated_at=T0)
        # As the recorder stores them: one batch a (simulated) second of the engine.
        for first in range(0, EQUITY_POINTS, EQUITY_CHUNK):
            count = min(EQUITY_CHUNK, EQUITY_POINTS - first)
            minutes = np.arange(first, first + count, dtype=np.int64)
            equity_append(
                run_id=big.pk,
                times=int(T0.timestamp()) * 10**9 + minutes * 60 * 10**9,
                portfolio_values=100_000 + (minutes % 7919) / 10,
                cash_values=np.full(count, 50_000.0),
            )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return big


def timed(client: Client, url: str, headers: dict, *, expect: tuple[int, ...] = (200,)) -> float:
    started = time.perf_counter()
    response = client.get(url, headers=headers)
    elapsed = time.perf_counter() - started
    if response.status_code not in expect:
        sys.exit(f"GET {url} answered {response.status_code}: {response.content[:500]!r}")
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)
    return elapsed


def median_ms(client: Client, url: str, headers: dict, **kwargs) -> float:
    for _ in range(WARM_UP):
        timed(client, url, headers, **kwargs)
    return statistics.median(timed(client, url, headers, **kwargs) for _ in range(REQUESTS)) * 1000


def profile(client: Client, url: str, headers: dict, **kwargs) -> str:
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for _ in range(5):
        timed(client, url, headers, **kwargs)
    profiler.stop()
    return profiler.output_text(unicode=True, color=False, show_all=False)


started = time.perf_counter()
big_run = set_up()
print(f"Set up on {backend} in {time.perf_counter() - started:.1f} s: {Run.objects.count():,} runs, "
      f"{Order.objects.filter(run=big_run).count():,} orders and {EquityChunk.objects.filter(run=big_run).aggregate(points=Sum('points'))['points']:,} equity points "
      f"on run {big_run.pk}, {__import__('securities.models', fromlist=['Security']).Security.objects.count():,} securities")

operator = User.objects.create_user("bench-operator", password="!")
operator.groups.add(Group.objects.get(name="Operator"))
client = Client()
client.force_login(operator)

HTMX = {"HX-Request": "true"}
symbol_check = {"field": "strategy.symbol", "asset_type": "equity", "input_id": "new-strategy-symbol"}
CASES = [
    # (what, url, headers, target ms, accepted statuses)
    ("Performance tab refresh (run with 100,000 orders, 1,000,000 equity points)",
     f"/runs/{big_run.pk}/?tab=performance", {**HTMX, "HX-Target": "performance"}, 50, (200,)),
    ("Runs list page (10,000 runs)", "/runs/", {}, 100, (200,)),
    ("Symbol check per keystroke, unknown so far ('MSF', with corrections)",
     "/securities/validate?" + "&".join(f"{k}={v}" for k, v in {**symbol_check, "strategy.symbol": "MSF"}.items()),
     {**HTMX, "HX-Target": "new-strategy-symbol-status"}, 10, (200,)),
    ("Symbol check per keystroke, recognised ('MSFT')",
     "/securities/validate?" + "&".join(f"{k}={v}" for k, v in {**symbol_check, "strategy.symbol": "MSFT"}.items()),
     {**HTMX, "HX-Target": "new-strategy-symbol-status"}, 10, (200,)),
]

# WhiteNoise's manifest storage wants collectstatic; the pages only need the plain URLs.
with override_settings(STORAGES={"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                                 "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}):
    results = []
    for what, url, headers, target, expect in CASES:
        measured = median_ms(client, url, headers, expect=expect)
        results.append((what, url, headers, target, expect, measured))
    print(f"\nServer time, median of {REQUESTS} requests after {WARM_UP} warm-up ({backend}, DEBUG off):")
    for what, _url, _headers, target, _expect, measured in results:
        verdict = "PASS" if measured < target else "FAIL"
        print(f"  {what}: {measured:.1f} ms (target < {target} ms) {verdict}, target/measured {target / measured:.2f}")
    for what, url, headers, target, expect, measured in results:
        if args.profile or measured >= target:
            print(f"\n--- pyinstrument: {what} ({url}), 5 requests ---")
            print(profile(client, url, headers, expect=expect))
