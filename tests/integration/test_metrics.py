"""Prometheus metrics: counters kept by real workers, scraped from /metrics and from the
``trigger_metrics`` exporter, parsed with prometheus_client's own parser."""

from __future__ import annotations

import socket
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import Process, finished, wait_for
from trigger_celery import runs, tasks
from trigger_celery.core import run_events
from trigger_celery.metrics import recorder
from trigger_celery.metrics.recorder import metrics_problems

pytestmark = pytest.mark.integration

TOKEN = "metrics-token-for-tests-only"
METRICS_ENV = {"TC_METRICS": "1"}


@pytest.fixture
def counting(settings):
    """This process counts too (it triggers), with the setting the workers get."""
    settings.TRIGGER_CELERY = {**settings.TRIGGER_CELERY, "METRICS": {"TOKEN": TOKEN}}
    r = recorder.client()
    assert r is not None
    r.delete(recorder.counters_key())
    run_events.subscribe(recorder.record)
    try:
        yield
    finally:
        run_events.unsubscribe(recorder.record)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(found, metric: str, **labels: str) -> float:
    return found.get((metric, frozenset(labels.items())), 0.0)


def test_metrics_count_what_ran_and_refuse_without_the_token(own, counting, client):
    own.worker(env=METRICS_ENV)
    own.beat(env=METRICS_ENV)
    ok = [tasks.trigger("hello-world", {"message": f"m{i}"}) for i in range(3)]
    bad = tasks.trigger("always-fails", {})
    for handle in [*ok, bad]:
        finished(handle)

    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    found = samples(response.content.decode())

    hello = {"name": "hello-world", "queue_name": "hello-world"}
    fails = {"name": "always-fails", "queue_name": "always-fails"}
    assert value(found, "trigger_celery_run_triggered_total", **hello) == 3
    assert value(found, "trigger_celery_run_started_total", **hello) == 3
    assert value(found, "trigger_celery_run_succeeded_total", **hello) == 3
    assert value(found, "trigger_celery_run_failed_total", **hello) == 0
    # always-fails: 3 attempts (FAST_RETRY), so 2 retries and then the failure.
    assert value(found, "trigger_celery_run_triggered_total", **fails) == 1
    assert value(found, "trigger_celery_run_started_total", **fails) == 3
    assert value(found, "trigger_celery_run_retried_total", **fails) == 2
    assert value(found, "trigger_celery_run_failed_total", **fails) == 1
    assert value(found, "trigger_celery_run_runtime_seconds_count", **hello) == 3
    assert value(found, "trigger_celery_run_runtime_seconds_count", **fails) == 3
    assert value(found, "trigger_celery_run_runtime_seconds_bucket", le="+Inf", **hello) == 3
    # Every run ended: nothing queued or executing in their queues.
    assert value(found, "trigger_celery_queue_length", queue_name="hello-world") == 0
    assert value(found, "trigger_celery_queue_executing", queue_name="hello-world") == 0
    assert value(found, "trigger_celery_queue_concurrency_limit", queue_name="limit-2") == 2


def test_waiting_runs_and_cancels_are_counted(own, counting, client):
    own.worker(env=METRICS_ENV)
    own.beat(env=METRICS_ENV)
    handle = tasks.trigger("sleeper", {"seconds": 3600})
    wait_for(lambda: runs.retrieve(handle).is_waiting, what="the run to wait")

    def scrape():
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        return samples(response.content.decode())

    sleeper = {"name": "sleeper", "queue_name": "sleeper"}
    found = scrape()
    assert value(found, "trigger_celery_queue_waiting", queue_name="sleeper") == 1
    assert value(found, "trigger_celery_run_suspended_total", **sleeper) == 1
    assert value(found, "trigger_celery_run_canceled_total", **sleeper) == 0
    runs.cancel(handle)
    found = scrape()
    assert value(found, "trigger_celery_queue_waiting", queue_name="sleeper") == 0
    assert value(found, "trigger_celery_run_canceled_total", **sleeper) == 1


def test_the_exporter_serves_the_same_counters_on_its_own_port(own, counting, log_dir):
    own.worker(env=METRICS_ENV)
    own.beat(env=METRICS_ENV)
    handle = tasks.trigger("hello-world", {"message": "exported"})
    finished(handle)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exporter = Process(
        "metrics-exporter",
        [sys.executable, "-m", "django", "trigger_metrics", "--port", str(port)],
        log_dir,
        METRICS_ENV,
    )
    try:
        wait_for(lambda: "serving metrics" in exporter.log() or not exporter.alive(), timeout=60)
        assert exporter.alive(), exporter.log()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            found = samples(page.read().decode())
    finally:
        exporter.stop()
    hello = {"name": "hello-world", "queue_name": "hello-world"}
    assert value(found, "trigger_celery_run_triggered_total", **hello) == 1
    assert value(found, "trigger_celery_run_succeeded_total", **hello) == 1


def test_bad_metrics_settings_name_the_value(settings):
    assert metrics_problems({"TOKEN": "short"}) == [
        "TRIGGER_CELERY['METRICS']['TOKEN'] must be a string of at least 16 characters"
    ]
    assert any("'10.0.0.300'" in p for p in metrics_problems({"ALLOWED_IPS": ["10.0.0.300"]}))
    assert any("'TOKENS'" in p for p in metrics_problems({"TOKENS": "x"}))
    assert metrics_problems({"TOKEN": TOKEN, "ALLOWED_IPS": ["10.0.0.0/8"]}) == []
