"""Donchian Breakout: buy a break above the channel, exit on a break below it.

The channel is the highest high and the lowest low of the last `lookback` bars. While flat, a
buy stop order rests one tick above the channel high (good till cancelled, sized by notional:
all the cash at the fill price); while long, a sell-to-close stop rests at the channel low. When
the channel moves, the resting stop is cancelled and replaced at the new level.
"""

from strategies.sdk import (
    AssetType,
    CancelOrder,
    Intent,
    OrderType,
    PlaceOrder,
    StrategyBase,
    Subscribe,
    TimeInForce,
)
from strategies.sdk.indicators import Highest, Lowest

ENTRY, EXIT = "entry", "exit"


class Strategy(StrategyBase):
    def on_start(self, now):
        self.symbol = self.config["symbol"]
        lookback = int(self.config["lookback"])
        self.highest = Highest(lookback)
        self.lowest = Lowest(lookback)
        self.tick = None
        return [Subscribe(self.symbol, AssetType.EQUITY, self.config["frequency"])]

    def on_bar(self, event):
        high = self.highest.update(event.high)
        low = self.lowest.update(event.low)
        if high is None or low is None:
            return None
        if self.tick is None:
            self.tick = float(self.ctx.security(event.symbol).tick_size)
        held = self.ctx.position(event.symbol).quantity
        if held > 0:
            return self._rest(EXIT, low, Intent.SELL_TO_CLOSE, quantity=held)
        return self._rest(ENTRY, high + self.tick, Intent.BUY, notional=self.ctx.cash)

    def _rest(self, tag, stop, intent, *, quantity=None, notional=None):
        """Keep one stop order tagged `tag` at `stop`, replacing a stale one."""
        actions = []
        for order in self.ctx.open_orders(self.symbol):
            if order.tag == tag and abs(float(order.stop_price) - stop) < self.tick / 2:
                return None
            actions.append(CancelOrder(order.order_id))
        actions.append(
            PlaceOrder(
                self.symbol, intent, quantity=quantity, notional=notional, order_type=OrderType.STOP,
                stop_price=round(stop, 8), time_in_force=TimeInForce.GTC, tag=tag,
            )
        )
        return actions

    def on_order_update(self, event):
        if event.last_fill_quantity:
            self.ctx.log.info("%s stop filled: %s @ %s", event.tag, event.last_fill_quantity, event.last_fill_price)
        return None
