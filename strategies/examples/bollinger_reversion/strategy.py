"""Bollinger Mean Reversion: buy a dip below the lower band, sell the return to the middle.

The middle band is the simple moving average of the close over `period` bars; the lower band
sits `width` standard deviations below it. While flat, a buy limit order rests at the lower band
(sized by notional: all the cash, at the fill price); while long, a sell-to-close limit order
rests at the middle band. Each bar the resting order is cancelled and replaced when its band has
moved by a tick or more, so the order always tracks the current bands.
"""

import math

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
from strategies.sdk.indicators import SMA, RollingStd

ENTRY, EXIT = "entry", "exit"


class Strategy(StrategyBase):
    def on_start(self, now):
        self.symbol = self.config["symbol"]
        self.width = float(self.config["width"])
        period = int(self.config["period"])
        self.middle = SMA(period)
        self.deviation = RollingStd(period)
        self.tick = None
        return [Subscribe(self.symbol, AssetType.EQUITY, self.config["frequency"])]

    def on_bar(self, event):
        middle = self.middle.update(event.close)
        deviation = self.deviation.update(event.close)
        if middle is None or deviation is None:
            return None
        if self.tick is None:
            self.tick = float(self.ctx.security(event.symbol).tick_size)
        held = self.ctx.position(event.symbol).quantity
        if held > 0:
            # Sell at the middle band, rounded up to the tick grid.
            return self._rest(EXIT, math.ceil(middle / self.tick) * self.tick, Intent.SELL_TO_CLOSE, quantity=held)
        lower = middle - self.width * deviation
        if lower <= 0:
            return self._cancel(ENTRY)
        # Buy at the lower band, rounded down to the tick grid.
        return self._rest(ENTRY, math.floor(lower / self.tick) * self.tick, Intent.BUY, notional=self.ctx.cash)

    def _rest(self, tag, price, intent, *, quantity=None, notional=None):
        """Keep one limit order tagged `tag` at `price`: leave it if it is there already,
        otherwise cancel the stale one and place a new one."""
        actions = []
        for order in self.ctx.open_orders(self.symbol):
            if order.tag == tag and abs(float(order.limit_price) - price) < self.tick / 2:
                return None
            actions.append(CancelOrder(order.order_id))
        actions.append(
            PlaceOrder(
                self.symbol, intent, quantity=quantity, notional=notional, order_type=OrderType.LIMIT,
                limit_price=round(price, 8), time_in_force=TimeInForce.GTC, tag=tag,
            )
        )
        return actions

    def _cancel(self, tag):
        return [CancelOrder(order.order_id) for order in self.ctx.open_orders(self.symbol) if order.tag == tag] or None

    def on_order_update(self, event):
        if event.last_fill_quantity:
            self.ctx.log.info("%s fill: %s @ %s", event.tag, event.last_fill_quantity, event.last_fill_price)
        return None
