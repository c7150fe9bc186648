"""Idempotency keys a run holds besides its own (SPEC 5).

A run row holds one key. A trigger with another key that joins a pending debounced run
records its key here, so the next trigger with that key finds the run (is_cached), as
it would find the run the key made. The row goes with its run.
"""

from __future__ import annotations

from django.db import models


class JoinedKey(models.Model):
    """An idempotency key satisfied by a debounced run that holds another key."""

    environment = models.CharField(max_length=32)
    task_identifier = models.CharField(max_length=255)
    key = models.CharField(max_length=64)
    run = models.ForeignKey(
        "trigger_celery.Run", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["run"], name="tc_joined_key_run")]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "task_identifier", "key"], name="tc_joined_key_unique"
            )
        ]
