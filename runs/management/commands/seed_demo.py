"""Load the demo: security master, real MSFT/SPX daily bars, synthetic minute bars (labelled
synthetic), the example strategies published, a few finished demo runs and a Paper run ready
to Start. Idempotent."""

from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import transaction

import securities
import strategies
from runs.execution import run_execute
from runs.models import Mode, Run, Status
from runs.services import run_create, run_start
from securities.models import BarImport, Security
from securities.services import bars_generate_synthetic, bars_import, security_import_csv
from strategies.models import Strategy
from strategies.selectors import strategy_version_latest
from strategies.services import strategy_publish_folder

DATA_DIR = Path(securities.__file__).resolve().parent / "data"
EXAMPLES_DIR = Path(strategies.__file__).resolve().parent / "examples"

EXAMPLES = [
    ("buy_and_hold", "Buy & Hold"),
    ("sma_crossover", "SMA Crossover"),
    ("bollinger_reversion", "Bollinger Mean Reversion"),
    ("breakout", "Donchian Breakout"),
    ("es_trend", "ES Trend Follower"),
]
# (symbol, asset type, start price, seed) of the synthetic minute series.
SYNTHETIC_MINUTE = [("AAPL", "equity", 170.0, 11), ("NVDA", "equity", 215.0, 12), ("ES", "future", 2580.0, 13)]
SYNTHETIC_START, SYNTHETIC_END = date(2017, 10, 2), date(2017, 11, 10)

DEMO_RUNS = [
    ("Demo: SMA 10/20 on MSFT daily, 2005–2017", "SMA Crossover", {"start": "2005-01-03", "end": "2017-11-10"}, {"symbol": "MSFT", "fast": 10, "slow": 20, "frequency": "day"}, {"benchmark": "SPX"}),
    ("Demo: Buy & Hold MSFT, 2005–2017", "Buy & Hold", {"start": "2005-01-03", "end": "2017-11-10"}, {"symbol": "MSFT", "frequency": "day"}, {"benchmark": "SPX"}),
    ("Demo: Bollinger reversion on MSFT daily, 2010–2017", "Bollinger Mean Reversion", {"start": "2010-01-04", "end": "2017-11-10"}, {"symbol": "MSFT"}, {}),
    ("Demo: Donchian breakout on MSFT daily, 2010–2017", "Donchian Breakout", {"start": "2010-01-04", "end": "2017-11-10"}, {"symbol": "MSFT"}, {}),
    ("Demo: ES trend on synthetic minute bars, Oct 2017", "ES Trend Follower", {"start": "2017-10-02", "end": "2017-10-31"}, {"symbol": "ES"}, {"allow_short": True, "starting_cash": "250000"}),
]
# Left `new` for a visitor to Start: a Paper run replaying synthetic AAPL minute bars at 600x
# real time (a market minute every 0.1 s: the first trades within seconds; a night takes ~2 min).
DEMO_PAPER_RUNS = [
    (
        "Demo: Paper SMA 5/20 on AAPL minute bars, replayed at 600x",
        "SMA Crossover",
        {"feed": "replay", "speed": 600, "replay_start": "2017-10-02"},
        {"symbol": "AAPL", "fast": 5, "slow": 20, "frequency": "minute"},
        {},
    ),
]


class Command(BaseCommand):
    help = "Load demo data and example strategies (safe to run again: only what is missing is added)."

    def add_arguments(self, parser):
        parser.add_argument("--no-runs", action="store_true", help="Skip the finished demo runs.")

    def handle(self, *args, **options):
        self.seed_securities()
        self.seed_bars()
        self.seed_strategies()
        if not options["no_runs"]:
            self.seed_runs()
        self.stdout.write(self.style.SUCCESS("Demo data ready."))

    def seed_securities(self):
        for name, asset_type in (("us_equities.csv", "equity"), ("us_etfs.csv", "equity"), ("us_futures.csv", "future")):
            report = security_import_csv(file=DATA_DIR / name, default_asset_type=asset_type)
            self.stdout.write(f"Securities from {name}: {report.summary()}")
        Security.objects.update_or_create(
            symbol="SPX",
            asset_type="equity",
            defaults={"name": "S&P 500 Index (benchmark series, not tradable)", "exchange": "INDEX", "active": False},
        )

    def seed_bars(self):
        for symbol, file_name in (("MSFT", "MSFT_1d.csv.gz"), ("SPX", "SPX_1d.csv.gz")):
            security = Security.objects.get(symbol=symbol, asset_type="equity")
            if BarImport.objects.filter(security=security, frequency="day").exists():
                continue
            report = bars_import(file=DATA_DIR / file_name, symbol=symbol, asset_type="equity", frequency="day", source=file_name)
            self.stdout.write(f"Daily bars {symbol}: {report.summary()}")
        for symbol, asset_type, start_price, seed in SYNTHETIC_MINUTE:
            security = Security.objects.get(symbol=symbol, asset_type=asset_type)
            if BarImport.objects.filter(security=security, frequency="minute", synthetic=True).exists():
                continue
            report = bars_generate_synthetic(
                security=security, frequency="minute", start_date=SYNTHETIC_START, end_date=SYNTHETIC_END, seed=seed, start_price=start_price
            )
            self.stdout.write(f"Synthetic minute bars {symbol} ({asset_type}): {report.summary()}")

    def seed_strategies(self):
        for slug, name in EXAMPLES:
            version = strategy_version_latest(strategy=Strategy.objects.filter(name=name).first())
            if version is not None:
                continue
            version = strategy_publish_folder(folder=EXAMPLES_DIR / slug, name=name, message="Example strategy")
            self.stdout.write(f"Published {name} v{version.number}")

    def seed_runs(self):
        for description, strategy_name, environment, parameters, core in DEMO_RUNS:
            if Run.objects.filter(description=description).exists():
                continue
            version = strategy_version_latest(strategy=Strategy.objects.get(name=strategy_name))
            with transaction.atomic():
                run = run_create(
                    user=None,
                    strategy_version=version,
                    description=description,
                    config={"environment": environment, "strategy": parameters, "core": core},
                )
                run_start(run=run, user=None, enqueue=False)
            # Executed here, so the demo has results before the web server starts.
            status = run_execute(run_id=run.pk)
            style = self.style.SUCCESS if status == Status.COMPLETE else self.style.WARNING
            self.stdout.write(style(f"Demo run {run.pk} ({description}): {status}"))
        for description, strategy_name, environment, parameters, core in DEMO_PAPER_RUNS:
            if Run.objects.filter(description=description).exists():
                continue
            version = strategy_version_latest(strategy=Strategy.objects.get(name=strategy_name))
            run = run_create(
                user=None,
                strategy_version=version,
                mode=Mode.PAPER,
                description=description,
                config={"environment": environment, "strategy": parameters, "core": core},
            )
            self.stdout.write(f"Demo run {run.pk} ({description}): new, ready to Start")
