"""Buy and hold.

On the first bar, buy as much of the symbol as the cash allows, then hold it to the end.
"""

from strategies.sdk import AssetType, Intent, PlaceOrder, StrategyBase, Subscribe


class Strategy(StrategyBase):
    def on_start(self, now):
        self.invested = False
        return [Subscribe(self.config["symbol"], AssetType.EQUITY, self.config["frequency"])]

    def on_bar(self, event):
        if self.invested:
            return None
        self.invested = True
        return [PlaceOrder(event.symbol, Intent.BUY, notional=self.ctx.cash)]
