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
        lambda: {"environment": {"start": "2017-01-03", "end": "2017-03-31"}, "strategy": {"symbol": "MSFT", "frequency": "day"}, "core": {}}
    )


def daily_bars(*, security, start: str, closes: list[float]) -> list:
    """Stored daily bars on consecutive XNYS sessions from `start`: each opens 0.25 below its
    close, so the next-bar-open fill price of a market order is predictable."""
    from decimal import Decimal

    import exchange_calendars as xcals

    from securities.models import Bar

    calendar = xcals.get_calendar("XNYS")
    sessions = calendar.sessions_window(calendar.date_to_session(start, direction="next"), len(closes))
    opens = calendar.session_open
    bars = [
        Bar(
            security=security,
            frequency="day",
            time=opens(session).to_pydatetime(),
            open=Decimal(str(close - 0.25)),
            high=Decimal(str(close + 0.5)),
            low=Decimal(str(close - 0.75)),
            close=Decimal(str(close)),
            volume=Decimal(1_000_000),
        )
        for session, close in zip(sessions, closes, strict=True)
    ]
    return Bar.objects.bulk_create(bars)
