"""The per-run ledger: orders, fills, positions, cash entries and equity points.

Written by the run recorder in batches; money and quantities are NUMERIC.
"""

from django.db import models
from django.db.models import Q

from securities.models import AssetType

MONEY = {"max_digits": 24, "decimal_places": 8}
QUANTITY = {"max_digits": 24, "decimal_places": 8}


class OrderState(models.TextChoices):
    PENDING = "pending", "Pending"
    WORKING = "working", "Working"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"


class Intent(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"
    CLOSE = "close", "Close"
    BUY_TO_CLOSE = "buy_to_close", "Buy to close"
    SELL_TO_CLOSE = "sell_to_close", "Sell to close"


class Side(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class OrderType(models.TextChoices):
    MARKET = "market", "Market"
    LIMIT = "limit", "Limit"
    STOP = "stop", "Stop"
    STOP_LIMIT = "stop_limit", "Stop limit"


class TimeInForce(models.TextChoices):
    DAY = "day", "Day"
    GTC = "gtc", "GTC"


class Order(models.Model):
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="orders")
    order_id = models.PositiveIntegerField(help_text="Sequential per run, as the strategy sees it.")
    client_order_id = models.CharField(max_length=64)
    broker_order_id = models.CharField(max_length=64, blank=True)
    symbol = models.CharField(max_length=32)
    asset_type = models.CharField(max_length=16, choices=AssetType.choices)
    intent = models.CharField(max_length=16, choices=Intent.choices)
    side = models.CharField(max_length=4, choices=Side.choices, blank=True)
    order_type = models.CharField(max_length=16, choices=OrderType.choices)
    time_in_force = models.CharField(max_length=4, choices=TimeInForce.choices)
    quantity = models.DecimalField(null=True, blank=True, **QUANTITY)
    notional = models.DecimalField(null=True, blank=True, **MONEY)
    limit_price = models.DecimalField(null=True, blank=True, **MONEY)
    stop_price = models.DecimalField(null=True, blank=True, **MONEY)
    state = models.CharField(max_length=20, choices=OrderState.choices)
    filled_quantity = models.DecimalField(default=0, **QUANTITY)
    average_fill_price = models.DecimalField(null=True, blank=True, **MONEY)
    commission = models.DecimalField(default=0, **MONEY)
    reject_reason = models.CharField(max_length=300, blank=True)
    tag = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(help_text="Run time (simulated in Backtest).")
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["run", "order_id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "order_id"], name="order_run_order_id_unique"),
            models.UniqueConstraint(fields=["run", "client_order_id"], name="order_run_client_order_id_unique"),
            models.CheckConstraint(condition=Q(state__in=OrderState.values), name="order_state_valid"),
            models.CheckConstraint(condition=Q(filled_quantity__gte=0), name="order_filled_not_negative"),
            models.CheckConstraint(
                condition=Q(quantity__isnull=True) | Q(filled_quantity__lte=models.F("quantity")),
                name="order_filled_within_quantity",
            ),
        ]
        indexes = [models.Index(fields=["run", "state"], name="order_run_state_idx")]

    def __str__(self):
        return f"#{self.order_id} {self.intent} {self.quantity or self.notional} {self.symbol}"


class Fill(models.Model):
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="fills")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="fills")
    execution_id = models.CharField(max_length=64)
    time = models.DateTimeField()
    symbol = models.CharField(max_length=32)
    asset_type = models.CharField(max_length=16, choices=AssetType.choices)
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.DecimalField(**QUANTITY)
    price = models.DecimalField(**MONEY)
    commission = models.DecimalField(default=0, **MONEY)

    class Meta:
        ordering = ["run", "time", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "execution_id"], name="fill_run_execution_id_unique"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="fill_quantity_positive"),
            models.CheckConstraint(condition=Q(price__gt=0), name="fill_price_positive"),
        ]

    def __str__(self):
        return f"{self.side} {self.quantity} {self.symbol} @ {self.price}"


class Position(models.Model):
    """The latest state of a position in a run (quantity signed: negative is short)."""

    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="positions")
    symbol = models.CharField(max_length=32)
    asset_type = models.CharField(max_length=16, choices=AssetType.choices)
    quantity = models.DecimalField(**QUANTITY)
    average_price = models.DecimalField(**MONEY)
    last_price = models.DecimalField(null=True, blank=True, **MONEY)
    market_value = models.DecimalField(default=0, **MONEY)
    unrealized_pnl = models.DecimalField(default=0, **MONEY)
    realized_pnl = models.DecimalField(default=0, **MONEY)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["run", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["run", "symbol", "asset_type"], name="position_run_symbol_unique"),
        ]

    def __str__(self):
        return f"{self.quantity} {self.symbol}"


class LedgerEntry(models.Model):
    """Cash movements; Σ amount over a run equals its cash."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit", "Deposit"
        TRADE = "trade", "Trade"
        COMMISSION = "commission", "Commission"
        VARIATION_MARGIN = "variation_margin", "Variation margin"

    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="ledger_entries")
    time = models.DateTimeField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    amount = models.DecimalField(**MONEY)
    balance = models.DecimalField(**MONEY)
    order_id = models.PositiveIntegerField(null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["run", "time", "id"]
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["run", "time"], name="ledger_run_time_idx")]

    def __str__(self):
        return f"{self.kind} {self.amount}"


class EquityPoint(models.Model):
    """Portfolio value marked at a bar's close."""

    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="equity_points")
    time = models.DateTimeField()
    cash = models.DecimalField(**MONEY)
    portfolio_value = models.DecimalField(**MONEY)

    class Meta:
        ordering = ["run", "time"]
        constraints = [models.UniqueConstraint(fields=["run", "time"], name="equitypoint_run_time_unique")]

    def __str__(self):
        return f"{self.time:%Y-%m-%d %H:%M} {self.portfolio_value}"
