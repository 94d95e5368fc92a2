"""manage.py publish_strategy FOLDER [--name N] [--message M]"""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from strategies.bundle import BundleInvalid
from strategies.services import strategy_publish_folder


class Command(BaseCommand):
    help = "Publish a strategy folder (strategy.py, config_schema.json, *.py helpers) as the strategy's next version."

    def add_arguments(self, parser):
        parser.add_argument("folder", type=Path, help="Folder holding strategy.py and config_schema.json.")
        parser.add_argument("--name", help="Strategy name (default: the folder name, title-cased).")
        parser.add_argument("--message", default="", help="What changed in this version.")

    def handle(self, *args, folder: Path, name: str | None, message: str, **options):
        try:
            version = strategy_publish_folder(folder=folder, name=name, message=message)
        except BundleInvalid as exc:
            problems = [str(error) for error in exc.errors]
        except ValidationError as exc:
            problems = [f"{field}: {text}" for field, texts in exc.message_dict.items() for text in texts]
        else:
            self.stdout.write(f"Published {version.strategy.name} v{version.number}")
            return
        for problem in problems:
            self.stderr.write(problem)
        raise CommandError(f"{folder} was not published ({len(problems)} problem{'s' if len(problems) != 1 else ''})", returncode=1)
