"""manage.py import_securities FILE.csv [--asset-type equity|future]"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from securities.models import AssetType
from securities.services import SecurityImportError, security_import_csv


class Command(BaseCommand):
    help = (
        "Add or update securities from a CSV (symbol, name, and optionally asset_type, exchange, currency, sector, isin, "
        "multiplier, tick_size, fractionable, active). Upserts by (symbol, asset type); an empty cell keeps the stored "
        "value; bad rows are reported by line and skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="CSV file with a header row.")
        parser.add_argument(
            "--asset-type", choices=AssetType.values, help="Asset type for rows without an asset_type column or value."
        )

    def handle(self, *args, file: Path, asset_type: str | None, **options):
        try:
            report = security_import_csv(file=file, default_asset_type=asset_type)
        except SecurityImportError as exc:
            raise CommandError(f"{file}: {exc}; nothing was imported") from None
        for error in report.errors:
            self.stderr.write(error)
        self.stdout.write(f"{file.name}: {report.summary()}")
