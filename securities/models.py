from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Greatest, Least


# The values match strategies.sdk.enums (securities imports no other app; a test keeps them equal).
class AssetType(models.TextChoices):
    EQUITY = "equity", "Equity"
    FUTURE = "future", "Future"


class BarFrequency(models.TextChoices):
    SECOND = "second", "Second"
    MINUTE = "minute", "Minute"
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


class Security(models.Model):
    symbol = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    asset_type = models.CharField(max_length=16, choices=AssetType.choices)
    exchange = models.CharField(max_length=32, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    tick_size = models.DecimalField(max_digits=18, decimal_places=8, default="0.01")
    multiplier = models.DecimalField(max_digits=18, decimal_places=6, default="1")
    sector = models.CharField(max_length=100, blank=True)
    isin = models.CharField(max_length=12, blank=True)
    fractionable = models.BooleanField(default=False, help_text="Orders may use fractional quantities.")
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol", "asset_type"]
        constraints = [
            models.UniqueConstraint(fields=["symbol", "asset_type"], name="security_symbol_asset_type_unique"),
            models.CheckConstraint(condition=Q(asset_type__in=AssetType.values), name="security_asset_type_valid"),
            models.CheckConstraint(condition=Q(tick_size__gt=0), name="security_tick_size_positive"),
            models.CheckConstraint(condition=Q(multiplier__gt=0), name="security_multiplier_positive"),
            models.CheckConstraint(condition=~Q(symbol=""), name="security_symbol_not_empty"),
        ]
        indexes = [models.Index(fields=["asset_type", "symbol"], name="security_type_symbol_idx")]
        verbose_name_plural = "securities"

    def __str__(self):
        return f"{self.symbol} ({self.get_asset_type_display()})"


class Bar(models.Model):
    """One OHLCV bar; `time` is the bar's open time in UTC."""

    # db_index off: the unique (security, frequency, time) index already leads with it.
    security = models.ForeignKey(Security, on_delete=models.CASCADE, related_name="bars", db_index=False)
    frequency = models.CharField(max_length=8, choices=BarFrequency.choices)
    time = models.DateTimeField()
    open = models.DecimalField(max_digits=20, decimal_places=8)
    high = models.DecimalField(max_digits=20, decimal_places=8)
    low = models.DecimalField(max_digits=20, decimal_places=8)
    close = models.DecimalField(max_digits=20, decimal_places=8)
    volume = models.DecimalField(max_digits=24, decimal_places=6, default=0)

    class Meta:
        ordering = ["security", "frequency", "time"]
        constraints = [
            models.UniqueConstraint(fields=["security", "frequency", "time"], name="bar_security_frequency_time_unique"),
            models.CheckConstraint(condition=Q(frequency__in=BarFrequency.values), name="bar_frequency_valid"),
            models.CheckConstraint(condition=Q(low__gt=0), name="bar_low_positive"),
            models.CheckConstraint(condition=Q(high__gte=Greatest(F("open"), F("close"), F("low"))), name="bar_high_is_highest"),
            models.CheckConstraint(condition=Q(low__lte=Least(F("open"), F("close"))), name="bar_low_is_lowest"),
            models.CheckConstraint(condition=Q(volume__gte=0), name="bar_volume_not_negative"),
        ]

    def __str__(self):
        return f"{self.security.symbol} {self.frequency} {self.time:%Y-%m-%d %H:%M}"


class BarImport(models.Model):
    """Provenance of stored bars: one row per import (file or generator)."""

    security = models.ForeignKey(Security, on_delete=models.CASCADE, related_name="bar_imports")
    frequency = models.CharField(max_length=8, choices=BarFrequency.choices)
    source = models.CharField(max_length=300, help_text="File name or generator that produced the bars.")
    synthetic = models.BooleanField(default=False, help_text="Generated data, not a real market history.")
    rows_imported = models.PositiveIntegerField(default=0)
    rows_rejected = models.PositiveIntegerField(default=0)
    first_time = models.DateTimeField(null=True, blank=True)
    last_time = models.DateTimeField(null=True, blank=True)
    imported_at = models.DateTimeField(auto_now_add=True)
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-imported_at"]
        indexes = [models.Index(fields=["security", "frequency"], name="barimport_security_freq_idx")]

    def __str__(self):
        return f"{self.security} {self.frequency} from {self.source}"


class BarSeries(models.Model):
    """The revision of one (security, frequency) series of bars: database triggers on the bar
    table (PostgreSQL, migration 0003) bump it in every statement that changes the series, so
    a `BarBlock` tagged with an older revision is known to be stale.

    Defined after Bar on purpose: deleting a security deletes its bars first (Django's collector
    follows definition order), so the delete trigger's bump lands before the series row goes.
    """

    security = models.ForeignKey(Security, on_delete=models.CASCADE, related_name="bar_series", db_index=False)
    frequency = models.CharField(max_length=8, choices=BarFrequency.choices)
    revision = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["security", "frequency"], name="barseries_security_frequency_unique"),
        ]
        verbose_name_plural = "bar series"

    def __str__(self):
        return f"{self.security_id} {self.frequency} r{self.revision}"


class BarBlock(models.Model):
    """A packed copy of one period's bars (PostgreSQL only), for `bars_as_arrays`: a cache that
    the read path fills and a `BarSeries` revision invalidates; the bar table stays the truth.

    A period is a UTC calendar year for day and hour bars, a month for minute bars, a day for
    second bars. `times` are int64 nanoseconds and the others float64 (exactly the bar's
    `numeric::float8`), little-endian, oldest first; a period without bars has an empty block.
    """

    security = models.ForeignKey(Security, on_delete=models.CASCADE, related_name="bar_blocks", db_index=False)
    frequency = models.CharField(max_length=8, choices=BarFrequency.choices)
    period_start = models.DateTimeField(help_text="UTC start of the block's period.")
    revision = models.BigIntegerField(help_text="The series revision the block was built at.")
    points = models.IntegerField()
    first_time = models.DateTimeField(null=True, blank=True)
    last_time = models.DateTimeField(null=True, blank=True)
    times = models.BinaryField()
    open = models.BinaryField()
    high = models.BinaryField()
    low = models.BinaryField()
    close = models.BinaryField()
    volume = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["security", "frequency", "period_start"], name="barblock_security_frequency_period_unique"
            ),
        ]

    def __str__(self):
        return f"{self.security_id} {self.frequency} {self.period_start:%Y-%m-%d} ({self.points} bars)"
