"""Buy & Hold: buy the symbol with all the cash on the first bar, then hold it to the end.

The benchmark every other strategy should beat. The order is a market order sized by notional:
the engine buys the largest quantity whose cost, commission included, fits in the cash.
"""

from strategies.sdk import AssetType, Intent, PlaceOrder, StrategyBase, Subscribe


class Strategy(StrategyBase):
    def on_start(self, now):
        self.symbol = self.config["symbol"]
        self.invested = False
        return [Subscribe(self.symbol, AssetType.EQUITY, self.config["frequency"])]

    def on_bar(self, event):
        if self.invested:
            return None
        self.invested = True
        self.ctx.log.info("buying %s with all the cash (%s)", event.symbol, self.ctx.cash)
        return [PlaceOrder(event.symbol, Intent.BUY, notional=self.ctx.cash, tag="buy and hold")]

    def on_order_update(self, event):
        if event.state.is_terminal:
            self.ctx.log.info("order %s %s: %s at %s", event.order_id, event.state, event.filled_quantity, event.average_fill_price)
        return None
