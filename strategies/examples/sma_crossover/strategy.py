"""SMA Crossover: a long-only moving-average crossover.

When the fast simple moving average of the close crosses above the slow one, buy with all the
available cash (a market order sized by notional, filled at the next bar's open); when it
crosses below, close the position. The crossover detector lives in the helper module
signals.py.
"""

from signals import ABOVE, BELOW, CrossoverDetector

from strategies.sdk import AssetType, Intent, PlaceOrder, StrategyBase, Subscribe
from strategies.sdk.indicators import SMA


class Strategy(StrategyBase):
    def on_start(self, now):
        self.symbol = self.config["symbol"]
        fast, slow = int(self.config["fast"]), int(self.config["slow"])
        if fast >= slow:
            self.ctx.log.warning("fast (%s) is not shorter than slow (%s): the signals are inverted", fast, slow)
        self.fast = SMA(fast)
        self.slow = SMA(slow)
        self.crossover = CrossoverDetector()
        return [Subscribe(self.symbol, AssetType.EQUITY, self.config["frequency"])]

    def on_bar(self, event):
        fast = self.fast.update(event.close)
        slow = self.slow.update(event.close)
        if fast is None or slow is None:
            return None  # warming up
        signal = self.crossover.update(fast, slow)
        if signal is None:
            return None
        held = self.ctx.position(event.symbol).quantity
        if signal == ABOVE and held == 0:
            return [PlaceOrder(event.symbol, Intent.BUY, notional=self.ctx.cash, tag="entry")]
        if signal == BELOW and held > 0:
            return [PlaceOrder(event.symbol, Intent.CLOSE, tag="exit")]
        return None
