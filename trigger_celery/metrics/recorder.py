"""Counting runs as they move: one Redis hash per environment, shared by every process.

Each process (web, worker, beat) increments the counters of the changes it commits, so
the numbers are the same whichever process serves ``/metrics``, and computing them
never scans the run table. The hash fields are ``kind \\x1f labels...``:

    c  event task queue      count of an event (TRIGGERED, STARTED, COMPLETED, ...)
    h  task queue le         attempts that ended within ``le`` seconds (cumulative)
    hs task queue            sum of those attempts' seconds
    hc task queue            count of those attempts
    sc task / ss task        schedule ticks fired, and the sum of their seconds late

Counters need Redis (``REDIS_URL``); with the embedded database store they are not kept.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from typing import Any

import redis
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F

from trigger_celery.conf import get_settings
from trigger_celery.core import run_events
from trigger_celery.core.statuses import AttemptStatus, RunStatus
from trigger_celery.models import Attempt, Run, Waitpoint

log = logging.getLogger("trigger_celery.metrics")

SEP = "\x1f"
# Seconds; the last bucket is +Inf. Celery's runtimes span milliseconds to an hour.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# Events that end an attempt, so its duration goes into the histogram.
ENDS_ATTEMPT = frozenset(
    {
        RunStatus.COMPLETED.value,
        RunStatus.FAILED.value,
        RunStatus.CRASHED.value,
        RunStatus.TIMED_OUT.value,
        RunStatus.SYSTEM_FAILURE.value,
        RunStatus.CANCELED.value,  # counted only when it stopped an attempt (below)
        run_events.RETRIED,
    }
)
METRICS_KEYS = frozenset({"TOKEN", "ALLOWED_IPS"})

_client: redis.Redis | None = None
_client_url: str | None = None


def counters_key() -> str:
    return f"trigger_celery:metrics:{get_settings().ENVIRONMENT}"


def client() -> redis.Redis | None:
    """The Redis the counters live in (the store's), or None without Redis."""
    global _client, _client_url
    url = get_settings().REDIS_URL
    if not url:
        return None
    if _client is None or _client_url != url:
        _client, _client_url = redis.Redis.from_url(url, socket_timeout=2), url
    return _client


def record(run_id: str, event: str) -> None:
    """The run-events listener: count ``event`` under the run's task and queue."""
    r = client()
    if r is None:
        return
    found = _facts(run_id, event)
    if found is None:
        return
    pipe = r.pipeline(transaction=False)
    _count(pipe, event, *found)
    pipe.execute()


def record_many(run_ids: list[str], event: str) -> None:
    """``record`` for the runs of a batch (an event that ends no attempt): their rows in
    one query, their counts in one Redis round trip."""
    r = client()
    if r is None:
        return
    if event in ENDS_ATTEMPT:  # not published in bulk; each needs its attempt
        for run_id in run_ids:
            record(run_id, event)
        return
    pipe = r.pipeline(transaction=False)
    for start in range(0, len(run_ids), 500):  # a bounded IN list per query
        rows = Run.objects.filter(id__in=run_ids[start : start + 500]).values_list(
            "task_identifier", "queue", "schedule_tick_at", "created_at"
        )
        for row in rows:
            _count(pipe, event, *row, None)
    pipe.execute()


def _count(
    pipe: Any, event: str, task: str, queue: str, tick_at: Any, created_at: Any, seconds: Any
) -> None:
    key = counters_key()
    pipe.hincrby(key, SEP.join(("c", event, task, queue)), 1)
    if event == run_events.TRIGGERED and tick_at is not None:
        # A schedule fired: how long after its tick time the run was created.
        pipe.hincrby(key, SEP.join(("sc", task)), 1)
        pipe.hincrbyfloat(
            key, SEP.join(("ss", task)), max((created_at - tick_at).total_seconds(), 0)
        )
    if seconds is not None:
        for le in (*BUCKETS, "+Inf"):
            if le == "+Inf" or seconds <= float(le):
                pipe.hincrby(key, SEP.join(("h", task, queue, str(le))), 1)
        pipe.hincrbyfloat(key, SEP.join(("hs", task, queue)), seconds)
        pipe.hincrby(key, SEP.join(("hc", task, queue)), 1)


def _facts(run_id: str, event: str) -> tuple[str, str, Any, Any, float | None] | None:
    """Task, queue, schedule tick and creation time of the run, and the seconds of the
    attempt ``event`` ended (None when it ended none): one query per event."""
    if event in ENDS_ATTEMPT:
        # The run's current attempt is the one that just ended; read it with its run.
        ended = (
            Attempt.objects.filter(run_id=run_id, number=F("run__attempt_count"))
            .values_list(
                "run__task_identifier", "run__queue", "started_at", "finished_at", "status"
            )
            .first()
        )
        if ended is not None:
            task, queue, started_at, finished_at, status = ended
            seconds = None
            # A cancel ends an attempt only when it stopped one: a run canceled while it
            # waited for a retry has its failed attempt counted already, by RETRIED.
            stopped = event != RunStatus.CANCELED.value or status == AttemptStatus.CANCELED
            # An attempt whose process died has no known end: its finish is when its
            # lease ran out and the crash was found, up to LEASE_SECONDS later, and
            # one SIGKILL would add that wait as a runtime (celery-exporter observes
            # no runtime for a lost worker either).
            known = status != AttemptStatus.CRASHED
            if stopped and known and started_at is not None and finished_at is not None:
                waited = _waited(run_id, started_at, finished_at)
                seconds = max((finished_at - started_at).total_seconds() - waited, 0.0)
            return task, queue, None, None, seconds
    row = (
        Run.objects.filter(id=run_id)
        .values_list("task_identifier", "queue", "schedule_tick_at", "created_at")
        .first()
    )
    return None if row is None else (*row, None)


def _waited(run_id: str, start: Any, end: Any) -> float:
    """Seconds of [start, end] the run spent in its waits: an attempt that suspended is
    continued when the run resumes, and the time between is not execution (SPEC 12)."""
    spans = Waitpoint.objects.filter(run_id=run_id, created_at__lt=end).values_list(
        "created_at", "completed_at"
    )
    total, cursor = 0.0, start
    for opened, closed in sorted(spans):
        a, b = max(opened, cursor), min(closed or end, end)
        if b > a:
            total += (b - a).total_seconds()
            cursor = b
    return total


def enabled() -> bool:
    try:
        return get_settings().METRICS is not None
    except ImproperlyConfigured:  # TRIGGER_CELERY is not a dict: check E001 says so
        return False


def connect() -> None:
    """Start counting in this process when ``TRIGGER_CELERY['METRICS']`` is set."""
    if enabled():
        run_events.subscribe(record, many=record_many)


def metrics_problems(value: Any) -> list[str]:
    """What is wrong with ``TRIGGER_CELERY['METRICS']`` (empty when it is fine)."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [f"TRIGGER_CELERY['METRICS'] must be a dict or None, got {value!r}"]
    problems = [
        f"TRIGGER_CELERY['METRICS']: unknown key {key!r}; accepted: TOKEN, ALLOWED_IPS"
        for key in sorted(set(value) - METRICS_KEYS)
    ]
    token = value.get("TOKEN")
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        # Named by its type and length, not its value: it is a secret.
        got = f"{len(token)} characters" if isinstance(token, str) else type(token).__name__
        problems.append(
            "TRIGGER_CELERY['METRICS']['TOKEN'] must be a string of at least 16 characters, "
            f"got {got}"
        )
    ips = value.get("ALLOWED_IPS", [])
    if not isinstance(ips, list | tuple):
        problems.append(f"TRIGGER_CELERY['METRICS']['ALLOWED_IPS'] must be a list, got {ips!r}")
    else:
        for ip in ips:
            try:
                ipaddress.ip_network(ip, strict=False)
            except (TypeError, ValueError):
                problems.append(
                    f"TRIGGER_CELERY['METRICS']['ALLOWED_IPS']: {ip!r} is not an address or "
                    "network (e.g. '10.0.0.5' or '10.0.0.0/8')"
                )
    if not get_settings().REDIS_URL:
        problems.append("TRIGGER_CELERY['METRICS'] needs REDIS_URL: the counters are kept in Redis")
    return problems


@checks.register()
def check_metrics(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if not enabled():  # also when TRIGGER_CELERY is not a dict (check E001)
        return []
    return [
        checks.Error(p, id="trigger_celery.E301") for p in metrics_problems(get_settings().METRICS)
    ]
