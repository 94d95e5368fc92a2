"""manage.py import_bars FILE --symbol S --asset-type T --frequency F [--skip-bad] [--timezone TZ] [--synthetic]"""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from securities.csv_bars import BarFileError
from securities.models import AssetType, BarFrequency
from securities.services import bars_import

# A rejected file lists at most this many of its bad rows (the count says how many in all).
ERRORS_SHOWN = 50


class Command(BaseCommand):
    help = (
        "Import OHLCV bars from a CSV or .csv.gz (header: date|time|timestamp|datetime, open, high, low, close[, volume]). "
        "Dates are exchange sessions (bar time = session open); naive date-times are exchange time unless --timezone. "
        "A file with bad rows is rejected whole unless --skip-bad. Bars in the file's time range are replaced."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--asset-type", required=True, choices=AssetType.values)
        parser.add_argument("--frequency", required=True, choices=BarFrequency.values)
        parser.add_argument("--skip-bad", action="store_true", help="Import the good rows and report the bad ones.")
        parser.add_argument("--timezone", help="IANA time zone of naive date-times (default: the exchange's).")
        parser.add_argument("--synthetic", action="store_true", help="Label the bars as synthetic (generated) data.")

    def handle(self, *args, file: Path, symbol, asset_type, frequency, skip_bad, timezone, synthetic, **options):
        progress_bar = None

        def progress(done: int, total: int) -> None:
            nonlocal progress_bar
            if progress_bar is None:
                progress_bar = tqdm(total=total, unit=" bars", unit_scale=True, desc="storing", file=sys.stderr)
            progress_bar.update(done - progress_bar.n)

        interactive = self.stdout.isatty() and file.stat().st_size > 5_000_000 if file.is_file() else False
        try:
            report = bars_import(
                file=file,
                symbol=symbol,
                asset_type=asset_type,
                frequency=frequency,
                skip_bad=skip_bad,
                timezone=timezone,
                synthetic=synthetic,
                progress=progress if interactive else None,
            )
        except BarFileError as exc:
            self._write_errors(exc.errors)
            raise CommandError(str(exc)) from None
        finally:
            if progress_bar is not None:
                progress_bar.close()
        self._write_errors(report.errors)
        self.stdout.write(report.summary())

    def _write_errors(self, errors: list[str]) -> None:
        for error in errors[:ERRORS_SHOWN]:
            self.stderr.write(error)
        if len(errors) > ERRORS_SHOWN:
            self.stderr.write(f"… and {len(errors) - ERRORS_SHOWN:,} more")
