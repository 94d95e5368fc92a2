"""Crossover: trades when the helper module's signal says so."""

import signals
from signals import crossover

from strategies.sdk import AssetType, Intent, PlaceOrder, StrategyBase, Subscribe


class Strategy(StrategyBase):
    def on_start(self, now):
        self.closes = []
        return [Subscribe(self.config["symbol"], AssetType.EQUITY, self.config["frequency"])]

    def on_bar(self, event):
        self.closes.append(event.close)
        if crossover(self.closes, self.config["fast"], self.config["slow"]):
            return [PlaceOrder(event.symbol, Intent.BUY, quantity=1)]
        return None


def signal_source():
    # Resolved when called, after the load: the bundle's own `signals` must still be found.
    import signals as late

    return late.SOURCE, signals.SOURCE
