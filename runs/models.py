from django.conf import settings
from django.db import models
from django.db.models import Q


class Mode(models.TextChoices):
    BACKTEST = "backtest", "Backtest"
    PAPER = "paper", "Paper"
    LIVE = "live", "Live"


class Status(models.TextChoices):
    NEW = "new", "New"
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"
    STOPPED = "stopped", "Stopped"
    ERROR = "error", "Error"


FINISHED_STATUSES = (Status.COMPLETE, Status.STOPPED, Status.ERROR)


class Run(models.Model):
    description = models.CharField(max_length=200)
    strategy_version = models.ForeignKey("strategies.StrategyVersion", on_delete=models.PROTECT, related_name="runs")
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.BACKTEST)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    config = models.JSONField(default=dict, help_text="{environment, strategy, core}")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    copied_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="copies")
    study = models.ForeignKey(
        "runs.Study", null=True, blank=True, on_delete=models.PROTECT, related_name="trials", db_index=False,
        help_text="Optimize study this run is a trial of.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    start_requested_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    kill_requested_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    progress = models.PositiveSmallIntegerField(default=0)
    bars_processed = models.PositiveBigIntegerField(default=0)
    # Summary kept on the run so the runs list needs no ledger query.
    portfolio_value = models.DecimalField(max_digits=24, decimal_places=8, null=True, blank=True)
    pnl = models.DecimalField(max_digits=24, decimal_places=8, null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    # Orders by state and fill totals, kept current by the recorder so the Performance tab needs
    # no aggregate over a run's orders: {"orders": {state: n}, "fills": n, "filled_quantity": "…", "commission": "…"}.
    order_stats = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=Status.values), name="run_status_valid"),
            models.CheckConstraint(condition=Q(mode__in=Mode.values), name="run_mode_valid"),
            models.CheckConstraint(condition=Q(progress__lte=100), name="run_progress_percent"),
        ]
        indexes = [
            models.Index(fields=["-created_at"], name="run_created_idx"),
            models.Index(fields=["status", "-created_at"], name="run_status_created_idx"),
            models.Index(fields=["mode", "-created_at"], name="run_mode_created_idx"),
            models.Index(fields=["strategy_version", "-created_at"], name="run_version_created_idx"),
            models.Index(fields=["study"], name="run_study_idx"),
        ]
        permissions = [
            ("operate_run", "Can create, start, kill and reset Backtest and Paper runs"),
            ("trade_live", "Can create, edit and start Live runs"),
        ]

    def __str__(self):
        return f"Run {self.pk}: {self.description}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class RunEvent(models.Model):
    """The run's timeline: created, start requested, started, kill requested, finished, reset."""

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        CONFIG_UPDATED = "config_updated", "Config updated"
        START_REQUESTED = "start_requested", "Start requested"
        STARTED = "started", "Started"
        KILL_REQUESTED = "kill_requested", "Kill requested"
        COMPLETED = "completed", "Completed"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"
        RESET = "reset", "Reset"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["run", "at", "id"]
        indexes = [models.Index(fields=["run", "at"], name="runevent_run_at_idx")]

    def __str__(self):
        return f"{self.get_kind_display()} at {self.at:%Y-%m-%d %H:%M:%S}"


class StudyStatus(models.TextChoices):
    NEW = "new", "New"
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"
    STOPPED = "stopped", "Stopped"
    ERROR = "error", "Error"


class Study(models.Model):
    """An Optimize study (product.md §11): trials of a base Backtest run's config, each an
    ordinary Backtest run (`Run.study`), that vary the parameters of `search_space`."""

    class SearchMode(models.TextChoices):
        SWEEP = "sweep", "Parameter sweep (one at a time)"
        GRID = "grid", "Grid (every combination)"

    class Direction(models.TextChoices):
        MAX = "max", "Highest"
        MIN = "min", "Lowest"

    description = models.CharField(max_length=200)
    base_run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="base_of_studies")
    strategy_version = models.ForeignKey("strategies.StrategyVersion", on_delete=models.PROTECT, related_name="studies")
    search_space = models.JSONField(default=dict, help_text="{parameter: [values]} in the strategy's parameter order")
    search_mode = models.CharField(max_length=10, choices=SearchMode.choices, default=SearchMode.SWEEP)
    objective_metric = models.CharField(max_length=40, default="sharpe")
    objective_direction = models.CharField(max_length=3, choices=Direction.choices, default=Direction.MAX)
    status = models.CharField(max_length=10, choices=StudyStatus.choices, default=StudyStatus.NEW)
    trial_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="studies")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    kill_requested_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(condition=Q(status__in=StudyStatus.values), name="study_status_valid"),
            models.CheckConstraint(condition=Q(search_mode__in=["sweep", "grid"]), name="study_search_mode_valid"),
            models.CheckConstraint(condition=Q(objective_direction__in=["max", "min"]), name="study_direction_valid"),
        ]

    def __str__(self):
        return f"Study {self.pk}: {self.description}"

    @property
    def is_finished(self) -> bool:
        return self.status in (StudyStatus.COMPLETE, StudyStatus.STOPPED, StudyStatus.ERROR)
