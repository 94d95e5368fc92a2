from django.conf import settings
from django.db import models
from django.db.models import Q


class Strategy(models.Model):
    """A strategy and its editable working copy of files (name -> source text)."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="strategies")
    files = models.JSONField(default=dict, help_text="Working copy: file name -> source text.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "strategies"
        permissions = [("author_strategy", "Can edit and publish strategies")]

    def __str__(self):
        return self.name


class ImmutableVersionError(Exception):
    pass


class StrategyVersion(models.Model):
    """An immutable snapshot made by Publish. The database refuses UPDATEs (trigger in migration
    0002); `save()` refuses them earlier with a clear message."""

    strategy = models.ForeignKey(Strategy, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    files = models.JSONField(help_text="file name -> source text, as published")
    config_schema = models.JSONField()
    content_hash = models.CharField(max_length=64)
    message = models.CharField(max_length=300, blank=True)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["strategy", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["strategy", "number"], name="strategyversion_strategy_number_unique"),
            models.CheckConstraint(condition=Q(number__gte=1), name="strategyversion_number_positive"),
        ]

    def __str__(self):
        return f"{self.strategy.name} v{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise ImmutableVersionError(f"{self} is published and can never be changed; publish a new version instead.")
        super().save(*args, **kwargs)
