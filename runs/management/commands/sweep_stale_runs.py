"""Mark runs left `running` by a dead worker (every worker also does this each minute)."""

from django.core.management.base import BaseCommand

from runs.execution import runs_stale_sweep


class Command(BaseCommand):
    help = "Runs whose heartbeat is stale: Backtest/Paper → error (worker_lost); Live → task redelivered for takeover."

    def handle(self, *args, **options):
        outcome = runs_stale_sweep()
        self.stdout.write(f"worker_lost: {outcome['worker_lost'] or 'none'}; redelivered (Live): {outcome['redelivered'] or 'none'}")
