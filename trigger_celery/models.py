"""Rows are the source of truth: every run, attempt, batch, waitpoint and schedule."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection, models
from django.db.models import Q
from django.utils import timezone

from trigger_celery.core.ids import ID_CLOCK_SLACK, first_id_at, last_id_at
from trigger_celery.core.statuses import FINAL_STATUSES, AttemptStatus, RunStatus

RUN_STATUS_CHOICES = [(s.value, s.value.replace("_", " ").title()) for s in RunStatus]
ATTEMPT_STATUS_CHOICES = [(s.value, s.value.title()) for s in AttemptStatus]


class Batch(models.Model):
    """A group of runs triggered by one batch call."""

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    environment = models.CharField(max_length=32)
    task_identifier = models.CharField(
        max_length=255, blank=True, help_text="Empty for mixed batches."
    )
    run_count = models.PositiveIntegerField(default=0)
    # Items whose idempotency key found a run outside this batch (another batch's, or
    # one triggered alone): {"index": run id}, so ``batch.retrieve`` lists every item.
    outside_runs = models.JSONField(null=True, blank=True)
    parent_run = models.ForeignKey(
        "Run",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="child_batches",
        db_index=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "batches"
        # Each index of every table and the queries that use it: index_uses.INDEX_USES.
        indexes = [models.Index(fields=["parent_run"], name="tc_batch_parent")]

    def __str__(self) -> str:
        return self.id


_OPEN_IN_BATCH = Q(batch__isnull=False) & ~Q(status__in=sorted(s.value for s in FINAL_STATUSES))


class RunQuerySet(models.QuerySet["Run"]):
    def due_delayed(self, now: Any) -> RunQuerySet:
        return self.filter(status=RunStatus.DELAYED, delayed_until__lte=now)

    def with_tag(self, *tags: str) -> RunQuerySet:
        """Runs carrying any of ``tags`` exactly (case and accents matter):
        ``runs.list(tag=)``, the admin's tag filter and the dashboard all filter with this."""
        if connection.features.supports_json_field_contains:
            any_of = models.Q()
            for tag in tags:
                any_of |= models.Q(tags__contains=[tag])
            return self.filter(any_of)
        # SQLite has no JSON containment: look the tags up among the array's elements.
        table = connection.ops.quote_name(self.model._meta.db_table)
        marks = ", ".join(["%s"] * len(tags))
        return self.extra(
            where=[
                f"EXISTS (SELECT 1 FROM json_each({table}.tags) WHERE json_each.value IN ({marks}))"
            ],
            params=list(tags),
        )

    def with_latest_attempt(self) -> RunQuerySet:
        """Each run with the number of its latest attempt row (``latest_attempt``), which
        :attr:`Run.attempts_begun` reads: one look-up per listed run, by the unique
        (run, number) index."""
        latest = Attempt.objects.filter(run_id=models.OuterRef("pk")).order_by("-number")
        return self.annotate(latest_attempt=models.Subquery(latest.values("number")[:1]))

    def created_between(self, start: datetime | None, end: datetime | None) -> RunQuerySet:
        """Runs created in ``[start, end)`` (``runs.list(from_=, to=)``, the dashboard). An id
        begins with its creation time (core/ids.py), so the range bounds the primary key too
        (widened by ID_CLOCK_SLACK): a page of a day long ago scans only that day's ids."""
        qs, slack = self, ID_CLOCK_SLACK
        if start is not None:
            qs = qs.filter(created_at__gte=start)
            if start > datetime.min.replace(tzinfo=start.tzinfo) + slack:
                qs = qs.filter(id__gte=first_id_at("run", start - slack))
        if end is not None:
            qs = qs.filter(created_at__lt=end)
            if end < datetime.max.replace(tzinfo=end.tzinfo) - slack:
                qs = qs.filter(id__lte=last_id_at("run", end + slack))
        return qs


class Run(models.Model):
    """One triggered execution of a task, across all its attempts."""

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    # Indexed only through Meta.indexes (see index_uses.py): no plain or "_like" index.
    task_identifier = models.CharField(max_length=255)
    status = models.CharField(max_length=20, choices=RUN_STATUS_CHOICES)
    environment = models.CharField(max_length=32)

    # Payload and output: inline JSON, or a Django storage path when large.
    payload = models.JSONField(null=True, blank=True)
    payload_ref = models.CharField(max_length=255, blank=True)
    output = models.JSONField(null=True, blank=True)
    output_ref = models.CharField(max_length=255, blank=True)
    error = models.JSONField(null=True, blank=True, help_text="{type, message, stack, code}")

    # Options, as resolved at trigger time (kept whole in `options` for replay).
    options = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=255)
    concurrency_key = models.CharField(max_length=255, null=True, blank=True)
    priority = models.FloatField(default=0)
    machine = models.CharField(max_length=32, blank=True)
    region = models.CharField(max_length=64, blank=True)
    tags = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    max_attempts = models.PositiveIntegerField()
    max_duration = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds")
    ttl = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds")

    idempotency_key = models.CharField(max_length=64, null=True, blank=True)
    idempotency_key_expires_at = models.DateTimeField(null=True, blank=True)
    debounce_key = models.CharField(max_length=255, null=True, blank=True)
    debounce_first_at = models.DateTimeField(null=True, blank=True)

    attempt_count = models.PositiveIntegerField(default=0)
    # Replay of waits (SPEC 7): how many wait steps the run has recorded.
    step_count = models.PositiveIntegerField(default=0)

    batch = models.ForeignKey(
        Batch,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        db_index=False,
    )
    batch_index = models.PositiveIntegerField(null=True, blank=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        db_index=False,
    )
    root = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="descendants",
        db_index=False,
    )
    depth = models.PositiveIntegerField(default=0)
    resume_parent_on_completion = models.BooleanField(default=False)
    replayed_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="replays",
        db_index=False,
    )
    schedule = models.ForeignKey(
        "Schedule",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        db_index=False,
    )
    schedule_tick_at = models.DateTimeField(null=True, blank=True)

    # Not auto_now_add: a trigger gives it the same instant as queued_at (and delays and
    # ttls count from it), so no run reads as queued before it was created.
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    delayed_until = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    # Not before: the due time of a queued retry (the run waits in its queue until then).
    available_at = models.DateTimeField(null=True, blank=True)
    ttl_expires_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    # Set by runs.cancel() on a run that is executing; its worker stops it (SPEC 6).
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # Compute time used by earlier attempts' executions of this run, for max_duration.
    execution_ms = models.PositiveBigIntegerField(default=0)
    trace_context = models.JSONField(
        default=dict,
        blank=True,
        help_text="W3C trace context of the trigger (OpenTelemetry), for the attempts' spans",
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        # Each index and the queries that use it: index_uses.INDEX_USES.
        indexes = [
            models.Index(fields=["status", "delayed_until"], name="tc_run_status_delay"),
            models.Index(fields=["task_identifier", "-id"], name="tc_run_task"),
            models.Index(fields=["schedule", "-id"], name="tc_run_schedule"),
            models.Index(fields=["created_at"], name="tc_run_created"),
            models.Index(fields=["batch", "batch_index"], name="tc_run_batch"),
            models.Index(fields=["batch"], condition=_OPEN_IN_BATCH, name="tc_run_batch_open"),
            models.Index(fields=["parent"], name="tc_run_parent"),
            models.Index(fields=["root"], name="tc_run_root"),
            models.Index(fields=["replayed_from"], name="tc_run_replayed_from"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "task_identifier", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="tc_run_unique_idempotency_key",
            ),
            models.UniqueConstraint(
                fields=["environment", "task_identifier", "debounce_key"],
                condition=Q(debounce_key__isnull=False, status=RunStatus.DELAYED),
                name="tc_run_unique_pending_debounce",
            ),
            models.UniqueConstraint(
                fields=["schedule", "schedule_tick_at"],
                condition=Q(schedule__isnull=False, schedule_tick_at__isnull=False),
                name="tc_run_one_per_schedule_tick",
            ),
        ]
        permissions = [
            ("cancel_run", "Can cancel runs"),
            ("replay_run", "Can replay runs"),
            ("trigger_run", "Can trigger runs from the dashboard"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.task_identifier}, {self.status})"

    @property
    def attempts_begun(self) -> int:
        """How many attempts the run has begun, as users are shown it. ``attempt_count``
        is that, except after a resume: the count is taken back by one until the resumed
        execution starts (it continues the attempt it suspended in: the engine's fence),
        and stays so if the run ends before that (canceled while queued to resume) or
        its start is handed back. The latest attempt row decides then (annotated by
        ``with_latest_attempt``, or prefetched, or read)."""
        count = self.attempt_count
        if self.started_at is None:
            return count  # never started: no attempt row
        if hasattr(self, "latest_attempt"):
            return max(count, self.latest_attempt or 0)
        cached = getattr(self, "_prefetched_objects_cache", {}).get("attempts")
        numbers = (
            [a.number for a in cached]
            if cached is not None
            else self.attempts.values_list("number", flat=True)
        )
        return max(count, max(numbers, default=0))


class Attempt(models.Model):
    """One execution of a run's function in a worker."""

    # (run, number) is unique: that index serves every lookup by run.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="attempts", db_index=False)
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=ATTEMPT_STATUS_CHOICES)
    worker = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField()
    # When its latest execution began, if that was a resume after a wait (SPEC 7).
    resumed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="tc_attempt_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} #{self.number}"


class LogEntry(models.Model):
    """A structured log line written by ``logger`` inside a run."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="logs", db_index=False)
    attempt_number = models.PositiveIntegerField()
    level = models.CharField(max_length=8)
    message = models.TextField()
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]
        verbose_name_plural = "log entries"
        indexes = [models.Index(fields=["run", "id"], name="tc_log_run")]


class WaitpointQuerySet(models.QuerySet["Waitpoint"]):
    def pending(self) -> WaitpointQuerySet:
        return self.filter(completed_at__isnull=True)


class Waitpoint(models.Model):
    """Something a run waits for: a child run, a batch, or a point in time (SPEC 7)."""

    class Kind(models.TextChoices):
        RUN = "RUN"
        BATCH = "BATCH"
        DATETIME = "DATETIME"

    # (run, step) is unique: that index serves every lookup by run.
    run = models.ForeignKey(
        Run, on_delete=models.CASCADE, related_name="waitpoints", db_index=False
    )
    # Call order of the wait inside the run function; replay matches on it.
    step = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # What the step was (task id, "wait.for", ...) so changed code fails clearly on replay.
    label = models.CharField(max_length=255)
    child_run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    resume_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    # A BATCH wait with items keyed by the caller: the run of each item, in item order.
    # A key may find a run outside this batch (another batch's, or an earlier item's),
    # so the batch's own runs are not the whole result.
    item_runs = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = WaitpointQuerySet.as_manager()

    class Meta:
        ordering = ["run", "step"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step"], name="tc_waitpoint_unique_step"),
        ]
        indexes = [
            # The repair sweep and the pump look only at pending waitpoints, a small
            # slice of a table that keeps every wait ever made.
            models.Index(
                fields=["kind", "resume_at"],
                condition=Q(completed_at__isnull=True),
                name="tc_waitpoint_pending",
            ),
            models.Index(fields=["child_run"], name="tc_waitpoint_child"),
            models.Index(fields=["batch"], name="tc_waitpoint_batch"),
        ]


class QueueState(models.Model):
    """Durable per-queue switches (pause, a limit override) that the store mirrors."""

    name = models.CharField(primary_key=True, max_length=255)
    paused = models.BooleanField(default=False)
    # Set from the dashboard; wins over the code's limit everywhere, restores included.
    concurrency_limit_override = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


from trigger_celery.dashboard_models import BulkAction  # noqa: E402, F401  (registers it)
from trigger_celery.key_models import JoinedKey  # noqa: E402, F401  (registers it)
from trigger_celery.schedule_models import Schedule  # noqa: E402, F401  (registers it)
from trigger_celery.store_models import (  # noqa: E402, F401  (registers them)
    StoreEntry,
    StoreKeyTurn,
    StoreQueue,
    StoreSetting,
    StoreSlot,
    StoreStart,
)
