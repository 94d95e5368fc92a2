"""ES Trend Follower: follow the trend of a future with an ATR trailing stop.

Two exponential moving averages of the minute close set the direction: fast above slow means
long `contracts`, fast below slow means short `contracts` (or flat when short selling is not
allowed: the first sell the engine refuses with "short not allowed" switches the strategy to
long only). Every position carries a stop `atr_multiple` average true ranges away from the
close, trailed each bar in the position's favour only. Futures P&L is price change ×
contracts × the contract multiplier (50 for ES).
"""

import math

from strategies.sdk import (
    AssetType,
    BarFrequency,
    CancelAllOrders,
    Intent,
    OrderState,
    OrderType,
    PlaceOrder,
    StrategyBase,
    Subscribe,
    TimeInForce,
)
from strategies.sdk.indicators import ATR, EMA

STOP = "stop"


class Strategy(StrategyBase):
    def on_start(self, now):
        self.symbol = self.config["symbol"]
        self.contracts = int(self.config["contracts"])
        self.multiple = float(self.config["atr_multiple"])
        self.fast = EMA(int(self.config["fast"]))
        self.slow = EMA(int(self.config["slow"]))
        self.atr = ATR(int(self.config["atr_period"]))
        self.short_allowed = True
        self.trend = None  # 1 up, -1 down: which EMA is on top
        self.direction = 0  # the side held or being entered: 1 long, -1 short, 0 flat
        self.stop_level = None
        self.tick = None
        return [Subscribe(self.symbol, AssetType.FUTURE, BarFrequency.MINUTE)]

    def on_bar(self, event):
        fast = self.fast.update(event.close)
        slow = self.slow.update(event.close)
        atr = self.atr.update(event.high, event.low, event.close)
        if fast is None or slow is None or atr is None:
            return None
        held = self.ctx.position(event.symbol, AssetType.FUTURE).quantity
        trend = 1 if fast > slow else -1 if fast < slow else self.trend
        if trend != self.trend:
            self.trend = trend
            wanted = trend if trend > 0 or self.short_allowed else 0
            if wanted != self.direction or held:
                return self._turn(wanted, held)
        if held:
            return self._trail(held, event.close, atr)
        return None

    def _turn(self, wanted, held):
        """Cancel the stop, flatten, and open the new side."""
        self.direction = wanted
        self.stop_level = None
        actions = [CancelAllOrders(self.symbol)]
        if held:
            actions.append(PlaceOrder(self.symbol, Intent.CLOSE, asset_type=AssetType.FUTURE, tag="exit"))
        if wanted:
            intent = Intent.BUY if wanted > 0 else Intent.SELL
            actions.append(PlaceOrder(self.symbol, intent, quantity=self.contracts, asset_type=AssetType.FUTURE, tag="entry"))
        return actions

    def _trail(self, held, close, atr):
        """Move the stop towards the price (never away from it), on the contract's tick grid."""
        if self.tick is None:
            self.tick = float(self.ctx.security(self.symbol, AssetType.FUTURE).tick_size)
        long = held > 0
        if long:
            level = math.floor((close - self.multiple * atr) / self.tick) * self.tick
        else:
            level = math.ceil((close + self.multiple * atr) / self.tick) * self.tick
        if self.stop_level is not None and (level <= self.stop_level if long else level >= self.stop_level):
            return None
        self.stop_level = level
        return [
            CancelAllOrders(self.symbol),
            PlaceOrder(
                self.symbol, Intent.SELL_TO_CLOSE if long else Intent.BUY_TO_CLOSE, quantity=abs(held),
                order_type=OrderType.STOP, stop_price=round(level, 8), time_in_force=TimeInForce.GTC,
                asset_type=AssetType.FUTURE, tag=STOP,
            ),
        ]

    def on_order_update(self, event):
        if event.state is OrderState.REJECTED and (event.reason or "").startswith("short not allowed"):
            if self.short_allowed:
                self.ctx.log.warning("short selling is not allowed (core.allow_short): trading long only")
            self.short_allowed = False
            self.direction = 0
        elif event.tag == STOP and event.state is OrderState.FILLED:
            self.ctx.log.info("stopped out at %s", event.average_fill_price)
            self.stop_level = None
            self.direction = 0  # flat until the trend turns again
        return None
