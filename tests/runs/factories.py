import factory

from runs.models import Mode, Run, Status
from tests.strategies.factories import StrategyVersionFactory


class RunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Run

    description = factory.Sequence(lambda n: f"Run {n}")
    strategy_version = factory.SubFactory(StrategyVersionFactory)
    mode = Mode.BACKTEST
    status = Status.NEW
    config = factory.LazyFunction(
        lambda: {"environment": {"start": "2017-01-03", "end": "2017-03-31"}, "strategy": {"symbol": "MSFT"}, "core": {}}
    )
