"""SMA crossover (10/20, long-only, all-in notional, market orders at the next open) on N
synthetic minute bars: Lookout end to end (`manage.py backtest`, persistence included) against
backtesting.py on the same bars and rules, in the same run. Prints bars/second of each, the
ratio, our peak memory, and whether the final equities agree."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--bars", type=int, default=1_000_000)
parser.add_argument(
    "--repeat", type=int, default=3,
    help="Measure each side this many times, alternating (this VM's timings drift by 20-40%% within minutes); the ratio is of the medians.",
)
parser.add_argument("--database-url", default=None, help="Default: PostgreSQL lookout_bench at 127.0.0.1 if reachable, else SQLite.")
args = parser.parse_args()


def postgres_reachable() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432"], capture_output=True).returncode == 0


database_url = args.database_url
if database_url is None and postgres_reachable():
    database_url = "postgres://postgres@127.0.0.1:5432/lookout_bench"
if database_url and database_url.startswith(("postgres://", "postgresql://")):
    # The bench's own database: created on first use (an existing one is kept, bars and all).
    from urllib.parse import urlsplit

    address = urlsplit(database_url)
    subprocess.run(
        ["createdb", "-h", address.hostname or "127.0.0.1", "-p", str(address.port or 5432), "-U", address.username or "postgres", address.path.lstrip("/")],
        capture_output=True,
    )
# Production settings (DEBUG off: Django keeps no query log, as on a deployment).
env = {**os.environ, "DEBUG": "false", "SECRET_KEY": "bench-engine-not-secret", "LOOKOUT_VAR_DIR": str(ROOT / "var" / "bench")}
if database_url:
    env["DATABASE_URL"] = database_url
os.environ.update(env)

subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)

import django  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

import exchange_calendars as xcals  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from backtesting import Backtest, Strategy  # noqa: E402

from securities.models import Bar, Security  # noqa: E402
from securities.selectors import bars_as_arrays  # noqa: E402
from securities.services import bars_store  # noqa: E402
from securities.synthetic import synthetic_minute_bars  # noqa: E402
from strategies.bundle import NothingChanged  # noqa: E402
from strategies.sdk.indicators import SMA  # noqa: E402
from strategies.services import strategy_publish_folder  # noqa: E402

SYMBOL, NAME = "LKBENCH", "Lookout benchmark (synthetic)"
calendar = xcals.get_calendar("XNYS")
first_session = date(2007, 1, 3)  # XNYS sessions here start 2006-11-24 by default
sessions_needed = -(-args.bars // 380) + 1  # early closes: fewer than 390 bars some days
last_session = calendar.sessions_window(pd.Timestamp(first_session), sessions_needed)[-1].date()

security, _ = Security.objects.get_or_create(symbol=SYMBOL, asset_type="equity", defaults={"name": NAME, "exchange": "BENCH"})
stored = Bar.objects.filter(security=security, frequency="minute").count()
if stored < args.bars:
    print(f"generating {sessions_needed:,} sessions of synthetic minute bars ...", flush=True)
    arrays = synthetic_minute_bars(symbol=SYMBOL, start_date=first_session, end_date=last_session, seed=7, start_price=100.0)
    bars_store(security=security, frequency="minute", bars=arrays, source="bench/engine", synthetic=True)

try:
    strategy_publish_folder(folder=ROOT / "strategies" / "examples" / "sma_crossover", name="SMA Crossover", message="bench")
except NothingChanged:
    pass

# Each run adds ~165,000 order, fill and ledger rows: the bench database keeps none of the earlier
# runs, so every measurement writes into tables of the same size; and the server writes out what
# earlier runs (or the bar generation) left in its buffers now, not in the middle of ours.
def database_emptied_of_runs() -> None:
    if database_url:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE runs_run CASCADE")
            cursor.execute("VACUUM ANALYZE")
            cursor.execute("CHECKPOINT")

# The window holding exactly the first N stored bars.
times = [t.replace(tzinfo=None) for t in Bar.objects.filter(security=security, frequency="minute").order_by("time").values_list("time", flat=True)[: args.bars]]
start, end = pd.Timestamp(times[0], tz="UTC"), pd.Timestamp(times[-1], tz="UTC") + pd.Timedelta(minutes=1)

# --- Lookout, end to end -------------------------------------------------------------------
command = [
    sys.executable, "manage.py", "backtest", "--strategy", "SMA Crossover",
    "--start", start.isoformat(), "--end", end.isoformat(),
    "--param", f"symbol={SYMBOL}", "--param", "fast=10", "--param", "slow=20", "--param", "frequency=minute", "--json",
]


# Our command is started by a small launcher that times it and reads its peak memory: a child
# forked straight from this process (by now holding the bars and backtesting.py's frame) would
# inherit this process's resident size into its own peak.
LAUNCHER = (
    "import resource, subprocess, sys, time\n"
    "began = time.perf_counter()\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "seconds = time.perf_counter() - began\n"
    "print(f'{seconds} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def ours_measured() -> tuple[float, float, dict]:
    """Seconds, peak memory (MB, the command's process or its record writer, whichever is
    larger) and the command's JSON line."""
    database_emptied_of_runs()
    completed = subprocess.run([sys.executable, "-c", LAUNCHER, *command], cwd=ROOT, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        print(completed.stdout, completed.stderr)
        sys.exit("our backtest failed")
    seconds, peak_kb = completed.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(peak_kb) / 1024, json.loads(completed.stdout.strip().splitlines()[-1])


# --- backtesting.py, same bars, same rules -----------------------------------------------------
data = bars_as_arrays(security=security, frequency="minute", start=start.to_pydatetime(), end=end.to_pydatetime())
frame = pd.DataFrame(
    {"Open": data.open, "High": data.high, "Low": data.low, "Close": data.close, "Volume": data.volume},
    index=pd.to_datetime(data.times, utc=True).tz_localize(None),
)


def incremental_sma(values, period):
    """The same incremental SMA our strategy uses, so both sides see identical signals."""
    sma = SMA(period)
    return np.array([np.nan if (v := sma.update(float(x))) is None else v for x in values])


opens = frame["Open"].to_numpy()


class SmaCrossLongOnly(Strategy):
    def init(self):
        self.fast = self.I(incremental_sma, self.data.Close, 10)
        self.slow = self.I(incremental_sma, self.data.Close, 20)
        self.above = None

    def next(self):
        fast, slow = self.fast[-1], self.slow[-1]
        if np.isnan(slow):
            return
        above, previous = fast > slow, self.above
        self.above = above
        if previous is None or previous == above:
            return
        if above and not self.position:
            # All available cash in whole shares at the next open, as our notional order does
            # (backtesting.py's fractional sizing would keep a margin of one share).
            following = len(self.data)  # the next bar's index
            if following < len(opens):
                self.buy(size=int(self.equity // opens[following]))
        elif not above and self.position:
            self.position.close()


def peer_measured():
    began = time.perf_counter()
    stats = Backtest(frame, SmaCrossLongOnly, cash=100_000, commission=0, trade_on_close=False, exclusive_orders=False, finalize_trades=False).run()
    return time.perf_counter() - began, stats


# Alternating, so a slower spell of the machine falls on both sides alike.
ours_times, peer_times, peaks = [], [], []
for attempt in range(1, args.repeat + 1):
    ours_seconds, peak, ours = ours_measured()
    peaks.append(peak)
    peer_seconds, stats = peer_measured()
    ours_times.append(ours_seconds)
    peer_times.append(peer_seconds)
    print(f"  run {attempt}: Lookout {ours_seconds:.2f} s, backtesting.py {peer_seconds:.2f} s ({peer_seconds / ours_seconds:.2f}x)", flush=True)
peak_mb = max(peaks)
ours_seconds, peer_seconds = statistics.median(ours_times), statistics.median(peer_times)

ours_final = ours["metrics"]["final_value"]
peer_final = float(stats["Equity Final [$]"])
bars = ours["bars_processed"]
ours_rate, peer_rate = bars / ours_seconds, len(frame) / peer_seconds
print()
print(f"bars: {bars:,} (ours) / {len(frame):,} (backtesting.py); trades: {ours['metrics']['trades']} / {int(stats['# Trades'])}")
print(f"Lookout (manage.py backtest, PostgreSQL persistence: {'yes' if database_url else 'no, SQLite'}): {ours_seconds:8.2f} s  {ours_rate:12,.0f} bars/s  peak memory {peak_mb:,.0f} MB")
print(f"backtesting.py {__import__('backtesting').__version__} (Backtest.run):                 {peer_seconds:8.2f} s  {peer_rate:12,.0f} bars/s")
median_of = f"median of {args.repeat} alternating runs each" if args.repeat > 1 else "one run each"
print(f"ratio (Lookout / backtesting.py bars per second, {median_of}): {ours_rate / peer_rate:.2f}x   target >= 2x, peak memory < 400 MB")
difference = ours_final - peer_final
# Same trades at the same times and prices; sizes may differ by one share where backtesting.py's
# cash, a float summed over thousands of trades, falls a hair short of a whole number of shares
# that our exact (Decimal) cash buys.
from portfolio.models import Fill  # noqa: E402

ours_entries = list(Fill.objects.filter(run_id=ours["run_id"], side="buy").order_by("time").values_list("time", "quantity", "price"))
peer_entries = list(stats["_trades"][["EntryTime", "Size", "EntryPrice"]].itertuples(index=False))
timing_differs = len(ours_entries) != len(peer_entries) or any(
    time_ours.replace(tzinfo=None) != peer.EntryTime.to_pydatetime() or abs(float(price_ours) - float(peer.EntryPrice)) > 1e-6
    for (time_ours, _quantity, price_ours), peer in zip(ours_entries, peer_entries, strict=False)
)
size_differs = [
    (index, quantity, peer.Size)
    for index, ((_time, quantity, _price), peer) in enumerate(zip(ours_entries, peer_entries, strict=False))
    if int(quantity) != int(peer.Size)
]
difference = ours_final - peer_final
if abs(difference) < 0.01:
    verdict = "SAME"
elif not timing_differs and all(abs(int(ours) - int(peer)) == 1 for _index, ours, peer in size_differs) and abs(difference / peer_final) < 1e-4:
    verdict = (
        f"SAME TRADES (difference {difference:+,.2f}, {difference / peer_final:+.5%}: {len(size_differs)} of {len(ours_entries):,} entries "
        "one share apart: backtesting.py's cash is a float, and once it fell a hair short of a whole share the two cash balances drift apart by cents)"
    )
else:
    verdict = f"DIFFERENT by {difference:+,.2f} ({difference / peer_final:+.4%})"
print(f"final equity: Lookout {ours_final:,.2f}  backtesting.py {peer_final:,.2f}  {verdict}")
if verdict.startswith("DIFFERENT"):
    for (time_ours, quantity, price_ours), peer in zip(ours_entries, peer_entries, strict=False):
        if int(quantity) != int(peer.Size) or time_ours.replace(tzinfo=None) != peer.EntryTime.to_pydatetime():
            print(f"first difference: Lookout {time_ours} {quantity} @ {price_ours}; backtesting.py {peer.EntryTime} {peer.Size} @ {peer.EntryPrice}")
            break
