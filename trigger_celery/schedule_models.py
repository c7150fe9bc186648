"""The schedule row (SPEC 8), and the version number beat's compare-and-set reads.

Beat reads due rows, then fires each with one UPDATE that must find the row as it read
it. That check is on ``version``, an integer the database adds one to on every write of
the row (a save here, and each of beat's own updates, through :func:`bump`). An earlier
release compared ``updated_at`` instead, which failed two ways: two saves within one
clock reading look like no save at all, and on SQLite, where a datetime is text, a
value another tool wrote in another spelling (``2026-01-05T10:00:00+00:00``, or
milliseconds) never equals the one Django sends back, so the row never fired again.
"""

from __future__ import annotations

import copy
from typing import Any

from django.db import models
from django.db.models import F


def bump() -> dict[str, Any]:
    """The ``version`` change to add to every ``update()`` of schedule rows."""
    return {"version": F("version") + 1}


class Schedule(models.Model):
    """A cron schedule of a ``schedules.task`` task (SPEC 8)."""

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    task_identifier = models.CharField(max_length=255)
    cron = models.CharField(max_length=255)
    timezone = models.CharField(max_length=64, default="UTC")
    external_id = models.CharField(max_length=255, blank=True)
    deduplication_key = models.CharField(max_length=255)
    environments = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    declarative = models.BooleanField(default=False)
    last_tick_at = models.DateTimeField(null=True, blank=True)
    next_tick_at = models.DateTimeField(null=True, blank=True)
    # "cron|timezone" that next_tick_at was computed for: the scheduler recomputes
    # next_tick_at when a row's cron or timezone no longer match it (edited in SQL).
    next_tick_for = models.CharField(max_length=330, blank=True, editable=False)
    problem = models.TextField(blank=True, help_text="Why the scheduler skipped this schedule.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # One more on every write (see the module docstring). The database default lets a
    # process of the release before insert rows while an upgrade rolls out.
    version = models.PositiveBigIntegerField(default=1, db_default=1, editable=False)

    class Meta:
        app_label = "trigger_celery"
        constraints = [
            models.UniqueConstraint(fields=["deduplication_key"], name="tc_schedule_unique_dedup"),
        ]
        indexes = [models.Index(fields=["active", "next_tick_at"], name="tc_schedule_due")]
        ordering = ["task_identifier", "id"]

    def __str__(self) -> str:
        return f"{self.task_identifier} {self.cron} ({self.timezone})"

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> Schedule:
        row = super().from_db(db, field_names, values)
        row._loaded = dict(zip(field_names, copy.deepcopy(list(values)), strict=True))
        return row

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Write back only the fields changed since the row was read, and move
        ``version`` on. Beat moves ``last_tick_at``, ``next_tick_at`` and ``problem`` by
        compare-and-set in between; an edit of other fields (the API, a form) must not
        put back what it read, and beat fires a tick only if ``version`` is still the
        one it read."""
        loaded: dict[str, Any] | None = getattr(self, "_loaded", None)
        whole = not args and not kwargs
        if loaded is not None and whole and not self._state.adding:
            changed = [
                f.attname
                for f in self._meta.concrete_fields
                if f.attname in loaded
                and f.attname != "version"
                and getattr(self, f.attname) != loaded[f.attname]
            ]
            kwargs["update_fields"] = [*changed, "updated_at"] if changed else []
        update_fields = kwargs.get("update_fields")
        writes = not self._state.adding and (update_fields is None or len(update_fields) > 0)
        read_version = self.version
        if writes:
            if update_fields is not None:
                kwargs["update_fields"] = [*update_fields, "version"]
            self.version = F("version") + 1
        try:
            super().save(*args, **kwargs)
        except BaseException:
            self.version = read_version
            raise
        if writes:
            self.refresh_from_db(fields=["version"])
        if whole:
            fields = self._meta.concrete_fields
            self._loaded = {f.attname: copy.deepcopy(getattr(self, f.attname)) for f in fields}

    @property
    def fingerprint(self) -> str:
        """What ``next_tick_at`` depends on; compared with ``next_tick_for``."""
        return f"{self.cron}|{self.timezone}"
