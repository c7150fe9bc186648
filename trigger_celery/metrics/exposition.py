"""``/metrics`` and the ``trigger_metrics`` exporter: the counters and live queue counts
in Prometheus' text format.

Names follow celery-exporter's and Flower's (``celery_task_sent_total``,
``celery_task_runtime``, ``celery_queue_length``, labels ``name`` and ``queue_name``),
namespaced ``trigger_celery_run_*`` and ``trigger_celery_queue_*``, so a Grafana panel
moves over by renaming the metric.

>>> # urls.py (opt-in; refused unless TRIGGER_CELERY["METRICS"] names a token or IPs)
>>> from trigger_celery.metrics.exposition import metrics_view
>>> urlpatterns += [path("metrics", metrics_view)]
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
        SummaryMetricFamily,
    )
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ImportError as exc:  # an optional extra
    raise ImportError(
        "trigger_celery's metrics need prometheus_client: pip install 'trigger-celery[metrics]'"
    ) from exc

from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.http import require_GET

from trigger_celery.conf import get_settings
from trigger_celery.coordination.factory import get_store
from trigger_celery.core import clock, run_events
from trigger_celery.core.statuses import RunStatus
from trigger_celery.engine import queueing
from trigger_celery.engine.registry import registry
from trigger_celery.metrics.recorder import BUCKETS, SEP, client, counters_key, metrics_problems
from trigger_celery.models import Run

log = logging.getLogger("trigger_celery.metrics")

# Event -> the counter's name after ``trigger_celery_run_`` (and before ``_total``).
COUNTERS = {
    run_events.TRIGGERED: ("triggered", "Runs triggered (celery_task_sent)"),
    run_events.STARTED: ("started", "Attempts started (celery_task_started)"),
    RunStatus.COMPLETED.value: ("succeeded", "Runs completed (celery_task_succeeded)"),
    RunStatus.FAILED.value: ("failed", "Runs failed after their retries (celery_task_failed)"),
    run_events.RETRIED: ("retried", "Attempts that failed and were retried"),
    RunStatus.CRASHED.value: ("crashed", "Runs crashed (worker lost, no retry left)"),
    RunStatus.TIMED_OUT.value: ("timed_out", "Runs past their max_duration"),
    RunStatus.SYSTEM_FAILURE.value: ("system_failure", "Runs ended by a system failure"),
    RunStatus.CANCELED.value: ("canceled", "Runs canceled (celery_task_revoked)"),
    RunStatus.EXPIRED.value: ("expired", "Runs expired in their queue (ttl)"),
    RunStatus.WAITING.value: ("suspended", "Attempts suspended to wait"),
}
LABELS = ["name", "queue_name"]


class RunCollector:
    """Reads the counters hash and the store on every scrape; keeps nothing itself."""

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield from self._queues()

    def _counters(self) -> Iterator[Metric]:
        r = client()
        raw: dict[bytes, bytes] = r.hgetall(counters_key()) if r is not None else {}
        families = {
            event: CounterMetricFamily(f"trigger_celery_run_{name}", doc, labels=LABELS)
            for event, (name, doc) in COUNTERS.items()
        }
        buckets: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        sums: dict[tuple[str, str], float] = {}
        fired: dict[str, float] = {}
        late: dict[str, float] = {}
        for field, value in raw.items():
            kind, *labels = field.decode().split(SEP)
            if kind == "c" and labels[0] in families:
                families[labels[0]].add_metric(labels[1:], float(value))
            elif kind == "h":
                buckets[(labels[0], labels[1])][labels[2]] = float(value)
            elif kind == "hs":
                sums[(labels[0], labels[1])] = float(value)
            elif kind == "sc":
                fired[labels[0]] = float(value)
            elif kind == "ss":
                late[labels[0]] = float(value)
        yield from families.values()
        schedules = SummaryMetricFamily(
            "trigger_celery_schedule_late_seconds",
            "Schedule ticks fired (_count) and how late after their tick time (_sum)",
            labels=["name"],
        )
        for task in sorted(fired):
            schedules.add_metric([task], count_value=fired[task], sum_value=late.get(task, 0.0))
        yield schedules
        runtime = HistogramMetricFamily(
            "trigger_celery_run_runtime_seconds",
            "Attempt durations by task (celery_task_runtime)",
            labels=LABELS,
        )
        for (task, queue), counts in sorted(buckets.items()):
            bounds = [*(str(b) for b in BUCKETS), "+Inf"]
            runtime.add_metric(
                [task, queue],
                [(b, counts.get(b, 0.0)) for b in bounds],
                sum_value=sums.get((task, queue), 0.0),
            )
        yield runtime

    def _queues(self) -> Iterator[Metric]:
        registry.ensure_discovered()
        queued: dict[str, int] = dict.fromkeys(registry.queues, 0)
        executing: dict[str, int] = dict.fromkeys(registry.queues, 0)
        heads: dict[str, float] = {}
        for row in get_store().stats():
            queued[row.queue] = queued.get(row.queue, 0) + row.queued
            executing[row.queue] = executing.get(row.queue, 0) + row.executing
            if row.oldest_score is not None:
                heads[row.queue] = min(heads.get(row.queue, row.oldest_score), row.oldest_score)
        now = clock.timestamp()
        # The store orders a queue by score (queued time minus priority, or a retry's
        # due time) and keeps no other time: the age is measured from the lowest score,
        # so it never reads the run table. With no priorities it is the longest wait of
        # a run that may start; a positive priority adds its seconds, as it does in the
        # queue's order.
        oldest = GaugeMetricFamily(
            "trigger_celery_queue_oldest_age_seconds",
            "Seconds since the queue's first run in line became due: now minus its score "
            "(queued time minus priority in seconds, or a retry's due time), so a priority "
            "counts as time already waited; 0 when no queued run is due",
            labels=["queue_name"],
        )
        length = GaugeMetricFamily(
            "trigger_celery_queue_length",
            "Runs waiting in the queue (celery_queue_length)",
            labels=["queue_name"],
        )
        running = GaugeMetricFamily(
            "trigger_celery_queue_executing",
            "Runs holding a slot of the queue",
            labels=["queue_name"],
        )
        limit = GaugeMetricFamily(
            "trigger_celery_queue_concurrency_limit",
            "The queue's concurrency limit",
            labels=["queue_name"],
        )
        # Waiting runs hold no slot, so the store does not see them: count them through
        # the (status, delayed_until) index, which reads the waiting rows only.
        waiting = GaugeMetricFamily(
            "trigger_celery_queue_waiting",
            "Runs waiting for a child, batch or time",
            labels=["queue_name"],
        )
        counts = (
            Run.objects.filter(status=RunStatus.WAITING)
            .values_list("queue")
            .annotate(n=Count("id"))
            .order_by()
        )
        waiting_in = dict.fromkeys(queued, 0)  # every known queue reads 0 when none waits
        waiting_in.update(dict(counts))
        for queue_name in sorted(waiting_in):
            waiting.add_metric([queue_name], waiting_in[queue_name])
        yield waiting
        overrides = queueing.limit_overrides()  # the dashboard's, in force on every worker
        for name in sorted(queued):
            length.add_metric([name], queued[name])
            running.add_metric([name], executing[name])
            oldest.add_metric([name], max(now - heads[name], 0.0) if name in heads else 0.0)
            q = registry.queues.get(name)
            in_force = overrides.get(name, q.concurrency_limit if q is not None else None)
            if in_force is not None:
                limit.add_metric([name], in_force)
        yield from (length, running, limit, oldest)


def render() -> bytes:
    """The metrics page, as Prometheus scrapes it."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RunCollector())  # type: ignore[arg-type]
    return generate_latest(reg)


def allowed(request: HttpRequest) -> bool:
    """A bearer token equal to METRICS['TOKEN'], or a client address in ALLOWED_IPS.
    With neither configured, nobody."""
    config: dict[str, Any] = get_settings().METRICS or {}
    token = config.get("TOKEN")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if (
        token
        and scheme.lower() == "bearer"  # an auth scheme is case-insensitive (RFC 7235)
        and hmac.compare_digest(given.strip().encode(), str(token).encode())
    ):
        return True
    remote = request.META.get("REMOTE_ADDR", "")
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # A server listening on [::] sees an IPv4 client as ::ffff:10.0.0.5, which no
        # IPv4 network "contains": compare the IPv4 address it carries.
        address = address.ipv4_mapped
    return any(
        address in ipaddress.ip_network(net, strict=False) for net in config.get("ALLOWED_IPS", ())
    )


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    problems = metrics_problems(get_settings().METRICS)
    if problems:
        # A WSGI server runs no system checks: the setting is named in the log, not to
        # the caller (who may not be allowed to read it), and no request is let in on it.
        log.error("/metrics refused: %s", "; ".join(problems))
        return HttpResponse(
            "metrics: TRIGGER_CELERY['METRICS'] is misconfigured; the server's log and "
            "`manage.py check` name the problem\n",
            status=503,
            content_type="text/plain",
        )
    if not allowed(request):
        return HttpResponseForbidden(
            "metrics: a bearer token or an allowed address is needed "
            "(TRIGGER_CELERY['METRICS'] TOKEN / ALLOWED_IPS)\n",
            content_type="text/plain",
        )
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
