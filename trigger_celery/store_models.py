"""Tables of the embedded (database) coordination store: ``coordination.database``.

The Redis store keeps the same state in Redis; these rows exist only when the database
is the store (the embedded default, or ``STORE = "database"``).
"""

from __future__ import annotations

from django.db import models


class StoreEntry(models.Model):
    """A run waiting in a queue (``DatabaseStore``)."""

    run_id = models.CharField(primary_key=True, max_length=40)
    queue = models.CharField(max_length=255)
    concurrency_key = models.CharField(max_length=255, null=True, blank=True)
    score = models.FloatField()
    attempt = models.PositiveIntegerField(default=0)  # the attempt it is queued for

    class Meta:
        indexes = [
            models.Index(fields=["queue", "concurrency_key", "score"], name="tc_store_entry_order")
        ]


class StoreSlot(models.Model):
    """A held concurrency slot with its lease (``DatabaseStore``)."""

    run_id = models.CharField(primary_key=True, max_length=40)
    queue = models.CharField(max_length=255)
    concurrency_key = models.CharField(max_length=255, null=True, blank=True)
    lease_expires_at = models.FloatField()
    claimed_at = models.FloatField()
    attempt = models.PositiveIntegerField(default=0)  # the attempt the slot belongs to
    # Set when its run starts. In a rate-limited queue a slot not started yet counts as a
    # start in the window, whatever its age (``DatabaseStore.started``).
    started = models.BooleanField(default=False)


class StoreQueue(models.Model):
    """A queue's limits and round-robin bookkeeping (``DatabaseStore``)."""

    name = models.CharField(primary_key=True, max_length=255)
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    total_limit = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_count = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_period = models.FloatField(null=True, blank=True)
    paused = models.BooleanField(default=False)


class StoreKeyTurn(models.Model):
    """When a concurrency key of a queue was last served (round-robin)."""

    queue = models.CharField(max_length=255)
    concurrency_key = models.CharField(max_length=255)
    served_at = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["queue", "concurrency_key"], name="tc_store_key_turn_unique"
            )
        ]


class StoreStart(models.Model):
    """A start counted against a queue's rate limit (``DatabaseStore``)."""

    queue = models.CharField(max_length=255)
    started_at = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["queue", "started_at"], name="tc_store_start_window")]


class StoreSetting(models.Model):
    """Environment-wide values of the store (limit, burst)."""

    key = models.CharField(primary_key=True, max_length=64)
    value = models.FloatField()
