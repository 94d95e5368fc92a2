"""The per-run ledger: orders, fills, positions, cash entries and equity points.

Written by the run recorder in batches; money and quantities are NUMERIC.
"""

from django.core.validators import RegexValidator
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
    # db_index off: a composite unique constraint or index below already leads with run.
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="orders", db_index=False)
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
    # db_index off: a composite unique constraint or index below already leads with run.
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="fills", db_index=False)
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

    # db_index off: a composite unique constraint or index below already leads with run.
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="positions", db_index=False)
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

    # db_index off: a composite unique constraint or index below already leads with run.
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="ledger_entries", db_index=False)
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


class EquityChunk(models.Model):
    """A stretch of the run's equity curve: consecutive points (one per bar, marked at the close)
    packed as columns of little-endian int64 nanosecond times and float64 values.

    A minute backtest makes a million points; a row per point would cost more to write than the
    run itself. The curve is a derived series for charts and metrics; the books (ledger, fills,
    positions, the run's final value) stay Decimal/NUMERIC. `chart_*` hold the chunk reduced to
    at most CHART_POINTS points keeping each bucket's lowest and highest values, so the chart of
    any run reads a few kilobytes per chunk.
    """

    CAPACITY = 65_536  # points per chunk
    # A batch tops up the last chunk while it is smaller than this (a Paper run stores a few
    # points a flush); bigger batches start a new chunk instead of rewriting a large one.
    TOP_UP_BELOW = 8_192
    CHART_POINTS = 512

    # db_index off: a composite unique constraint or index below already leads with run.
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="equity_chunks", db_index=False)
    sequence = models.PositiveIntegerField()
    first_time = models.DateTimeField()
    last_time = models.DateTimeField()
    points = models.PositiveIntegerField()
    times = models.BinaryField(help_text="int64 ns since the epoch, UTC, little-endian")
    portfolio_values = models.BinaryField(help_text="float64, little-endian")
    cash_values = models.BinaryField(help_text="float64, little-endian")
    chart_times = models.BinaryField()
    chart_values = models.BinaryField()

    class Meta:
        ordering = ["run", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["run", "sequence"], name="equitychunk_run_sequence_unique"),
            models.CheckConstraint(condition=Q(points__gt=0), name="equitychunk_points_positive"),
        ]

    def __str__(self):
        return f"{self.points} points {self.first_time:%Y-%m-%d %H:%M} – {self.last_time:%Y-%m-%d %H:%M}"


ENV_NAME_VALIDATOR = RegexValidator(
    r"^[A-Z_][A-Z0-9_]*$", "Give the NAME of an environment variable (capitals, digits, _), e.g. ALPACA_KEY_ID — never the key itself."
)


class BrokerAccount(models.Model):
    """A broker account Live runs send orders to. The credentials are never stored: only the
    NAMES of the environment variables that hold them in the worker's environment."""

    class Broker(models.TextChoices):
        ALPACA = "alpaca", "Alpaca"

    class Endpoint(models.TextChoices):
        PAPER = "paper", "Paper (the broker's paper trading)"
        LIVE = "live", "Live (real money)"

    # Alpaca's addresses by endpoint: (trading REST, trading stream, market data REST, market data stream).
    ALPACA_URLS = {
        Endpoint.PAPER: ("https://paper-api.alpaca.markets", "wss://paper-api.alpaca.markets/stream", "https://data.alpaca.markets", "wss://stream.data.alpaca.markets"),
        Endpoint.LIVE: ("https://api.alpaca.markets", "wss://api.alpaca.markets/stream", "https://data.alpaca.markets", "wss://stream.data.alpaca.markets"),
    }
    name = models.CharField(max_length=100, unique=True)
    broker = models.CharField(max_length=20, choices=Broker.choices, default=Broker.ALPACA)
    endpoint = models.CharField(max_length=10, choices=Endpoint.choices, default=Endpoint.PAPER)
    trading_url = models.CharField(max_length=200, blank=True, help_text="Empty: the broker's address for the endpoint (https://…).")
    trading_stream_url = models.CharField(max_length=200, blank=True, help_text="Empty: the broker's address for the endpoint (wss://…/stream).")
    data_url = models.CharField(max_length=200, blank=True, help_text="Empty: the broker's market data address (https://…).")
    data_stream_url = models.CharField(max_length=200, blank=True, help_text="Empty: the broker's market data stream (wss://…, without /v2/feed).")
    data_feed = models.CharField(max_length=10, default="iex", help_text="Market data feed: iex (free) or sip.")
    key_id_env = models.CharField(max_length=100, validators=[ENV_NAME_VALIDATOR], help_text="Name of the environment variable holding the API key id, e.g. ALPACA_KEY_ID.")
    secret_env = models.CharField(max_length=100, validators=[ENV_NAME_VALIDATOR], help_text="Name of the environment variable holding the API secret, e.g. ALPACA_SECRET_KEY.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(broker__in=["alpaca"]), name="brokeraccount_broker_valid"),
            models.CheckConstraint(condition=Q(endpoint__in=["paper", "live"]), name="brokeraccount_endpoint_valid"),
            models.CheckConstraint(condition=Q(key_id_env__regex=r"^[A-Z_][A-Z0-9_]*$"), name="brokeraccount_key_env_name"),
            models.CheckConstraint(condition=Q(secret_env__regex=r"^[A-Z_][A-Z0-9_]*$"), name="brokeraccount_secret_env_name"),
        ]

    def __str__(self):
        return f"{self.name} ({self.get_broker_display()} {self.endpoint})"

    @property
    def urls(self) -> tuple[str, str, str, str]:
        """(trading REST, trading stream, market data REST, market data stream), defaults filled in."""
        defaults = self.ALPACA_URLS[self.endpoint]
        given = (self.trading_url, self.trading_stream_url, self.data_url, self.data_stream_url)
        return tuple(value or default for value, default in zip(given, defaults, strict=True))


class LiveRunState(models.Model):
    """A Live run's standing with its broker account: which worker owns the run (`owner`, changed
    when a new worker resumes it; a worker that lost ownership sends nothing more), what the
    account held before the run (`baseline_positions`, left out of reconciliation), and what the
    broker reported at the latest reconciliation (shown on Performance)."""

    run = models.OneToOneField("runs.Run", on_delete=models.CASCADE, related_name="live_state")
    account = models.ForeignKey(BrokerAccount, on_delete=models.PROTECT, related_name="live_states")
    owner = models.CharField(max_length=64, help_text="The worker currently running the run.")
    resumes = models.PositiveIntegerField(default=0, help_text="How many times a new worker took the run over.")
    baseline_positions = models.JSONField(default=dict, help_text="{symbol: quantity} the account held when the run started")
    reconciled_at = models.DateTimeField(null=True, blank=True)
    cash = models.DecimalField(null=True, blank=True, **MONEY)
    equity = models.DecimalField(null=True, blank=True, **MONEY)
    buying_power = models.DecimalField(null=True, blank=True, **MONEY)
    positions = models.JSONField(default=list, help_text="[{symbol, quantity, average_price, market_value}] as the broker reported them")

    def __str__(self):
        return f"live state of run {self.run_id}"
