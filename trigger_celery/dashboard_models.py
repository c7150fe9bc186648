"""Rows only the dashboard writes: bulk actions and their progress."""

from __future__ import annotations

from django.db import models


class BulkAction(models.Model):
    """A cancel or replay of many runs, done in chunks in the background (dashboard)."""

    class Action(models.TextChoices):
        CANCEL = "cancel"
        REPLAY = "replay"

    action = models.CharField(max_length=16, choices=Action.choices)
    # Either the selected run ids, or the filters of the runs list (everything matched).
    run_ids = models.JSONField(default=list, blank=True)
    filters = models.JSONField(default=dict, blank=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # Runs are taken newest first; the id the next chunk starts below.
    cursor = models.CharField(max_length=40, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.action} of {self.total} run(s)"
