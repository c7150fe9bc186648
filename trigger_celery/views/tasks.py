"""Tasks page: every registered task, its configuration and its last 24 hours."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from django.db import connection
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from trigger_celery.conf import get_settings
from trigger_celery.core.retry import RetryPolicy
from trigger_celery.engine.registry import registry
from trigger_celery.models import QueueState, Run, Schedule
from trigger_celery.views.access import can, dashboard_view

# Durations for p50/p95 come from at most this many recent finished runs in the window.
DURATION_SAMPLE = 20_000


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


Counts = dict[str, dict[str, int]]
Durations = dict[str, tuple[float | None, float | None]]


def last_day(since: Any) -> tuple[Counts, Durations]:
    """Runs created since ``since``: counts by task and status, and (p50, p95) seconds
    from start to finish by task.

    PostgreSQL computes both in one pass over the window (nearest rank, like
    :func:`percentile`); elsewhere the durations come from a sample of the newest
    finished runs."""
    if connection.vendor == "postgresql":
        return _last_day_in_sql(since)
    counts: Counts = defaultdict(dict)
    for task, status, n in (
        Run.objects.filter(created_at__gte=since)
        .order_by()
        .values_list("task_identifier", "status")
        .annotate(n=Count("id"))
        .values_list("task_identifier", "status", "n")
    ):
        counts[task][status] = n
    finished = Run.objects.filter(
        created_at__gte=since, started_at__isnull=False, finished_at__isnull=False
    )
    samples: dict[str, list[float]] = defaultdict(list)
    for task, started, ended in finished.values_list(
        "task_identifier", "started_at", "finished_at"
    )[:DURATION_SAMPLE]:
        samples[task].append((ended - started).total_seconds())
    return counts, {t: (percentile(v, 0.5), percentile(v, 0.95)) for t, v in samples.items()}


def _last_day_in_sql(since: Any) -> tuple[Counts, Durations]:
    # One scan, two groupings: (task, status) rows carry the counts, (task) rows the
    # percentiles; a run not started or not finished has a NULL duration, which the
    # percentiles skip.
    seconds = "EXTRACT(EPOCH FROM (finished_at - started_at))"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT task_identifier, status, GROUPING(status), COUNT(*),"
            f" percentile_disc(0.5) WITHIN GROUP (ORDER BY {seconds}),"
            f" percentile_disc(0.95) WITHIN GROUP (ORDER BY {seconds})"
            f" FROM {connection.ops.quote_name(Run._meta.db_table)}"
            " WHERE created_at >= %s"
            " GROUP BY GROUPING SETS ((task_identifier, status), (task_identifier))",
            [since],
        )
        rows = cursor.fetchall()
    counts: Counts = defaultdict(dict)
    durations: Durations = {}
    for task, status, whole_task, n, p50, p95 in rows:
        if not whole_task:
            counts[task][status] = n
        elif p50 is not None:
            durations[task] = (float(p50), float(p95))
    return counts, durations


@dashboard_view("view_run")
def task_list(request: HttpRequest) -> HttpResponse:
    registry.ensure_discovered()
    counts, durations = last_day(timezone.now() - timedelta(hours=24))
    overrides = dict(
        QueueState.objects.filter(concurrency_limit_override__isnull=False).values_list(
            "name", "concurrency_limit_override"
        )
    )
    schedules: dict[str, list[Schedule]] = defaultdict(list)
    for s in Schedule.objects.filter(task_identifier__in=list(registry.tasks))[:500]:
        schedules[s.task_identifier].append(s)
    default_retry = RetryPolicy.from_value(get_settings().RETRY)  # a task without its own
    rows = []
    for task_id in sorted(registry.tasks):
        d = registry.tasks[task_id]
        schema = d.json_schema() if d.is_schema_task else None
        p50, p95 = durations.get(task_id, (None, None))
        rows.append(
            {
                "id": task_id,
                "description": d.description,
                "queue": d.queue.name,
                "limit": overrides.get(d.queue.name, d.queue.concurrency_limit),
                "overridden": d.queue.name in overrides,
                "rate_limit": d.queue.rate_limit,
                "retry": json.dumps(asdict(d.retry or default_retry)),
                "retry_is_default": d.retry is None,
                "max_duration": d.max_duration,
                "machine": d.machine or "—",
                "schema": json.dumps(schema, indent=2, ensure_ascii=False) if schema else "",
                "scheduled": d.is_scheduled,
                "schedules": schedules.get(task_id, [])[:5],
                "counts": sorted(counts.get(task_id, {}).items()),
                "total": sum(counts.get(task_id, {}).values()),
                "p50": f"{p50:.3f} s" if p50 is not None else "—",
                "p95": f"{p95:.3f} s" if p95 is not None else "—",
            }
        )
    return render(
        request,
        "trigger_celery/task_list.html",
        {"tasks": rows, "can_test": can(request, "trigger_run")},
    )
