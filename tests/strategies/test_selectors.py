import pytest

from strategies.models import StrategyVersion
from strategies.selectors import strategy_list, strategy_version_get, strategy_version_latest
from tests.strategies.factories import StrategyFactory, StrategyVersionFactory

pytestmark = pytest.mark.django_db


def test_strategy_list_carries_the_latest_version_number():
    published = StrategyFactory(name="B published")
    StrategyVersionFactory(strategy=published)
    StrategyVersionFactory(strategy=published)
    StrategyFactory(name="A draft")
    assert [(strategy.name, strategy.latest_version_number) for strategy in strategy_list()] == [("A draft", None), ("B published", 2)]


def test_latest_and_by_number():
    strategy = StrategyFactory()
    assert strategy_version_latest(strategy=strategy) is None
    assert strategy_version_latest(strategy=None) is None
    first, second = StrategyVersionFactory(strategy=strategy), StrategyVersionFactory(strategy=strategy)
    assert strategy_version_latest(strategy=strategy) == second
    assert strategy_version_get(strategy=strategy, number=1) == first
    with pytest.raises(StrategyVersion.DoesNotExist):
        strategy_version_get(strategy=strategy, number=3)
