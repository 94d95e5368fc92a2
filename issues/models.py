from django.conf import settings
from django.db import models
from django.db.models import Q


class Component(models.TextChoices):
    STRATEGY = "strategy", "Strategy"
    SIMULATION = "simulation", "Simulation"
    DATA = "data", "Data"
    BROKER = "broker", "Broker"
    PLATFORM = "platform", "Platform"


class Classification(models.TextChoices):
    USER = "user", "User error"
    SYSTEM = "system", "System error"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class Issue(models.Model):
    """A classified diagnostic of a run. The same fingerprint counts up instead of adding rows."""

    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="issues")
    code = models.CharField(max_length=40)
    component = models.CharField(max_length=16, choices=Component.choices)
    classification = models.CharField(max_length=8, choices=Classification.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    fingerprint = models.CharField(max_length=64, help_text="Identifies repeats of the same issue within a run.")
    message = models.CharField(max_length=500)
    detail = models.TextField(blank=True)
    count = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["run", "-last_seen"]
        constraints = [
            models.UniqueConstraint(fields=["run", "fingerprint"], name="issue_run_fingerprint_unique"),
            models.CheckConstraint(condition=Q(severity__in=Severity.values), name="issue_severity_valid"),
            models.CheckConstraint(condition=Q(count__gte=1), name="issue_count_positive"),
        ]

    def __str__(self):
        return f"{self.code}: {self.message}"


class LogEntry(models.Model):
    """A line of a run's strategy log (bounded per run: the newest RUN_LOG_MAX_LINES are kept)."""

    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="log_entries")
    sequence = models.PositiveBigIntegerField()
    time = models.DateTimeField(help_text="Run time (simulated in Backtest).")
    level = models.CharField(max_length=8)
    message = models.TextField()

    class Meta:
        ordering = ["run", "sequence"]
        verbose_name_plural = "log entries"
        constraints = [models.UniqueConstraint(fields=["run", "sequence"], name="logentry_run_sequence_unique")]

    def __str__(self):
        return f"[{self.level}] {self.message[:80]}"


class AuditEvent(models.Model):
    """Who did what to which object, and whether it was allowed."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=50)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=50, blank=True)
    allowed = models.BooleanField()
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]

    def __str__(self):
        verdict = "allowed" if self.allowed else "refused"
        return f"{self.actor} {self.action} {self.object_type}:{self.object_id} ({verdict})"


class ApiIdempotencyKey(models.Model):
    """The first answer to a state-changing API call made with an `Idempotency-Key` header, so a
    retry with the same key (per user) repeats it instead of acting twice. Kept 24 hours.
    `response_status` is null while the first request is still being answered."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_idempotency_keys")
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64, help_text="sha256 of method, path and body.")
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="apiidempotencykey_user_key_unique")]
        indexes = [models.Index(fields=["created_at"], name="apiidempotencykey_created_idx")]

    def __str__(self):
        return f"{self.user_id}:{self.key} {self.method} {self.path}"
