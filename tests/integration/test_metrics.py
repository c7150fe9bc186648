"""Prometheus metrics: counters kept by real workers, scraped from /metrics and from the
``trigger_metrics`` exporter, parsed with prometheus_client's own parser."""

from __future__ import annotations

import re
import socket
import sys
import time
import urllib.request
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import Process, finished, wait_for
from tests.taskapp import scheduled  # noqa: F401  (defines the schedules.task tasks)
from trigger_celery import queues, runs, schedules, tasks
from trigger_celery.core import clock, run_events
from trigger_celery.engine.schedules import ScheduleTicker
from trigger_celery.metrics import recorder
from trigger_celery.metrics.recorder import metrics_problems
from trigger_celery.models import Run, Schedule

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
    recorder.connect()  # as apps.ready does in every process
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


def scrape(client) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return samples(response.content.decode())


def scrape_counted(client, *counts: tuple[str, dict[str, str], float]) -> dict:
    """Scrape once each ``(metric, labels, n)`` has reached ``n``. A process counts a change
    just after it commits it, so a row can show the change a moment before its counter."""

    def ready():
        found = scrape(client)
        return found if all(value(found, m, **labels) >= n for m, labels, n in counts) else None

    return wait_for(ready, what=f"the counters to reach {counts}")


OLDEST = "trigger_celery_queue_oldest_age_seconds"


def test_metrics_count_what_ran_and_refuse_without_the_token(own, counting, client):
    own.worker(env=METRICS_ENV)
    own.beat(env=METRICS_ENV)
    ok = [tasks.trigger("hello-world", {"message": f"m{i}"}) for i in range(3)]
    bad = tasks.trigger("always-fails", {})
    for handle in [*ok, bad]:
        finished(handle)

    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 403
    hello = {"name": "hello-world", "queue_name": "hello-world"}
    fails = {"name": "always-fails", "queue_name": "always-fails"}
    found = scrape_counted(
        client,
        ("trigger_celery_run_succeeded_total", hello, 3),
        ("trigger_celery_run_runtime_seconds_count", hello, 3),
        ("trigger_celery_run_failed_total", fails, 1),
        ("trigger_celery_run_runtime_seconds_count", fails, 3),
    )

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

    # Every run ended: nothing queued or executing in their queues, once the last one's
    # slot is back (a worker gives it back just after the run's final write and counter).
    def idle():
        now = scrape(client)
        executing = value(now, "trigger_celery_queue_executing", queue_name="hello-world")
        return now if executing == 0 else None

    idle_scrape = wait_for(idle, what="the hello-world queue's slots to be given back")
    assert value(idle_scrape, "trigger_celery_queue_length", queue_name="hello-world") == 0
    assert value(found, "trigger_celery_queue_concurrency_limit", queue_name="limit-2") == 2
    queues.override_limit("limit-2", 5)  # the dashboard's override is the limit in force
    try:
        found = samples(
            client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
        )
        assert value(found, "trigger_celery_queue_concurrency_limit", queue_name="limit-2") == 5
    finally:
        queues.reset_limit("limit-2")


def test_a_batch_is_counted_in_one_query_whatever_its_size(own, counting, client):
    own.worker(env=METRICS_ENV)

    def statements() -> int:
        items = [{"payload": {"message": f"m{i}"}} for i in range(60)]
        with CaptureQueriesContext(connection) as queries:
            tasks.batch_trigger("hello-world", items)
        return len(queries)

    counted = statements()
    run_events.unsubscribe(recorder.record)  # the same batch, not counted
    try:
        uncounted = statements()
    finally:
        recorder.connect()
    # Counting a batch's triggers reads its runs once, not once per run.
    assert counted == uncounted + 1
    hello = {"name": "hello-world", "queue_name": "hello-world"}
    found = scrape_counted(client, ("trigger_celery_run_succeeded_total", hello, 120))
    assert value(found, "trigger_celery_run_triggered_total", **hello) == 60  # counted once
    assert value(found, "trigger_celery_run_started_total", **hello) == 120


def test_waiting_runs_and_cancels_are_counted(own, counting, client):
    own.worker(env=METRICS_ENV)
    own.beat(env=METRICS_ENV)
    handle = tasks.trigger("sleeper", {"seconds": 3600})
    wait_for(lambda: runs.retrieve(handle).is_waiting, what="the run to wait")

    sleeper = {"name": "sleeper", "queue_name": "sleeper"}
    found = scrape_counted(client, ("trigger_celery_run_suspended_total", sleeper, 1))
    assert value(found, "trigger_celery_queue_waiting", queue_name="sleeper") == 1
    assert value(found, "trigger_celery_run_suspended_total", **sleeper) == 1
    assert value(found, "trigger_celery_run_canceled_total", **sleeper) == 0
    runs.cancel(handle)
    found = scrape_counted(client, ("trigger_celery_run_canceled_total", sleeper, 1))
    assert value(found, "trigger_celery_queue_waiting", queue_name="sleeper") == 0
    # Read 0, not left out, as every queue gauge is for a known queue.
    assert ("trigger_celery_queue_waiting", frozenset({("queue_name", "sleeper")})) in found
    assert value(found, "trigger_celery_run_canceled_total", **sleeper) == 1


def test_an_attempt_that_waited_counts_its_execution_not_its_wait(own, counting, client):
    from trigger_celery.models import Attempt, Waitpoint

    own.worker(env=METRICS_ENV)
    own.beat(env=METRICS_ENV)
    handle = tasks.trigger("waits-a-while", {})  # suspends for 3 s, then resumes attempt 1
    assert finished(handle).status == "COMPLETED"
    labels = {"name": "waits-a-while", "queue_name": "waits-a-while"}
    found = scrape_counted(client, ("trigger_celery_run_runtime_seconds_count", labels, 1))
    assert value(found, "trigger_celery_run_runtime_seconds_count", **labels) == 1
    attempt = Attempt.objects.get(run_id=handle.id, number=1)
    wp = Waitpoint.objects.get(run_id=handle.id)
    assert (wp.completed_at - wp.created_at).total_seconds() >= 3  # the wait it made
    wall = (attempt.finished_at - attempt.started_at).total_seconds()
    recorded = value(found, "trigger_celery_run_runtime_seconds_sum", **labels)
    waited = (wp.completed_at - wp.created_at).total_seconds()
    assert recorded == pytest.approx(wall - waited, abs=1e-3)


def test_an_attempt_stopped_by_a_cancel_counts_its_runtime_once(own, counting, client):
    from trigger_celery.models import Attempt

    own.worker(env=METRICS_ENV)
    handle = tasks.trigger("stubborn", {"seconds": 30})
    wait_for(lambda: runs.retrieve(handle).status == "EXECUTING", what="the run to start")
    time.sleep(0.3)  # some runtime to count
    runs.cancel(handle)
    labels = {"name": "stubborn", "queue_name": "stubborn"}
    found = scrape_counted(client, ("trigger_celery_run_canceled_total", labels, 1))
    attempt = Attempt.objects.get(run_id=handle.id, number=1)
    assert attempt.status == "CANCELED"
    assert value(found, "trigger_celery_run_runtime_seconds_count", **labels) == 1
    wall = (attempt.finished_at - attempt.started_at).total_seconds()
    assert wall >= 0.3
    recorded = value(found, "trigger_celery_run_runtime_seconds_sum", **labels)
    assert recorded == pytest.approx(wall, abs=1e-3)


def test_a_run_canceled_between_attempts_counts_no_second_runtime(own, counting, client):
    own.worker(env=METRICS_ENV)
    handle = tasks.trigger("retry-later", {})  # its retry is a minute away
    labels = {"name": "retry-later", "queue_name": "retry-later"}
    scrape_counted(client, ("trigger_celery_run_retried_total", labels, 1))
    runs.cancel(handle)
    found = scrape_counted(client, ("trigger_celery_run_canceled_total", labels, 1))
    # The failed attempt was counted when it was retried; the cancel stopped none.
    assert value(found, "trigger_celery_run_runtime_seconds_count", **labels) == 1


def test_oldest_queued_age_covers_the_known_wait_and_is_zero_for_an_empty_queue(
    own, counting, client
):
    own.worker(env=METRICS_ENV)
    own.beat(env=METRICS_ENV)
    queues.pause("shared-1")  # its runs wait, with a worker ready for them
    try:
        first = tasks.trigger("shared-a", {"tag": "aged", "seconds": 0.01})
        queued_at = Run.objects.get(id=first.id).queued_at.timestamp()
        wait_for(lambda: clock.timestamp() - queued_at >= 1.0, what="the run to wait a second")
        waited_before = clock.timestamp() - queued_at
        found = scrape(client)
        waited_after = clock.timestamp() - queued_at
        age = value(found, OLDEST, queue_name="shared-1")
        assert waited_before - 1e-3 <= age <= waited_after + 1e-3
        assert value(found, "trigger_celery_queue_length", queue_name="shared-1") == 1
        assert (OLDEST, frozenset({("queue_name", "hello-world")})) in found
        assert value(found, OLDEST, queue_name="hello-world") == 0
        # A priority moves a run ahead as if it had waited that many seconds longer:
        # the gauge follows the queue's own order.
        ahead = tasks.trigger("shared-b", {"tag": "aged", "seconds": 0.01}, priority=3600)
        assert value(scrape(client), OLDEST, queue_name="shared-1") >= 3600
    finally:
        queues.resume("shared-1")
    assert finished(first).status == "COMPLETED"
    assert finished(ahead).status == "COMPLETED"
    found = scrape(client)
    assert value(found, "trigger_celery_queue_length", queue_name="shared-1") == 0
    assert value(found, OLDEST, queue_name="shared-1") == 0


def test_a_fired_schedule_is_counted_with_how_late_it_fired(own, counting, client):
    # No beat runs: the test drives the pump's schedule pass itself, as each beat does.
    s = schedules.create(task="sched-record", cron="* * * * *", deduplication_key=uuid.uuid4().hex)
    tick = clock.now().replace(second=0, microsecond=0) - timedelta(minutes=1)
    Schedule.objects.filter(id=s.id).update(next_tick_at=tick)  # a tick it missed
    late_before = (clock.now() - tick).total_seconds()
    fired = ScheduleTicker().tick()
    late_after = (clock.now() - tick).total_seconds()
    assert [(f.schedule_id, f.run_id is not None) for f in fired] == [(s.id, True)]

    found = scrape(client)
    name = {"name": "sched-record"}
    assert value(found, "trigger_celery_schedule_late_seconds_count", **name) == 1
    late = value(found, "trigger_celery_schedule_late_seconds_sum", **name)
    assert late_before - 1e-3 <= late <= late_after + 1e-3
    queue = {"name": "sched-record", "queue_name": Run.objects.get(id=fired[0].run_id).queue}
    assert value(found, "trigger_celery_run_triggered_total", **queue) == 1
    assert ScheduleTicker().tick() == []  # nothing more is due: the count stays
    assert value(scrape(client), "trigger_celery_schedule_late_seconds_count", **name) == 1


def test_every_final_status_is_counted_by_the_process_that_commits_it(own, counting, client):
    own.worker(env=METRICS_ENV)
    own.beat(env=METRICS_ENV)
    queues.pause("shared-1")
    try:
        expired = tasks.trigger("shared-a", {"tag": "expires"}, ttl="1s")  # by beat
        canceled = tasks.trigger("shared-b", {"tag": "canceled"})  # here
        runs.cancel(canceled)
        crashed = tasks.trigger("dies", {"die_on": [1, 2]})  # its process dies twice
        timed_out = tasks.trigger("stubborn", {"seconds": 30}, max_duration=5)  # monitor
        ended = {name: finished(h).status for name, h in [("expired", expired)]}
    finally:
        queues.resume("shared-1")
    ended.update(
        {name: finished(h).status for name, h in [("crashed", crashed), ("timed_out", timed_out)]}
    )
    ended["canceled"] = runs.retrieve(canceled).status
    assert ended == {
        "expired": "EXPIRED",
        "canceled": "CANCELED",
        "crashed": "CRASHED",
        "timed_out": "TIMED_OUT",
    }
    shared_a = {"name": "shared-a", "queue_name": "shared-1"}
    shared_b = {"name": "shared-b", "queue_name": "shared-1"}
    dies = {"name": "dies", "queue_name": "dies-1"}
    stubborn = {"name": "stubborn", "queue_name": "stubborn"}
    found = scrape_counted(
        client,
        ("trigger_celery_run_expired_total", shared_a, 1),
        ("trigger_celery_run_canceled_total", shared_b, 1),
        ("trigger_celery_run_crashed_total", dies, 1),
        ("trigger_celery_run_timed_out_total", stubborn, 1),
    )
    assert value(found, "trigger_celery_run_expired_total", **shared_a) == 1
    assert value(found, "trigger_celery_run_canceled_total", **shared_b) == 1
    assert value(found, "trigger_celery_run_started_total", **dies) == 2
    assert value(found, "trigger_celery_run_retried_total", **dies) == 1
    assert value(found, "trigger_celery_run_crashed_total", **dies) == 1
    assert value(found, "trigger_celery_run_timed_out_total", **stubborn) == 1
    # Each ending is counted once, under its own status only.
    for labels in (shared_a, shared_b, dies, stubborn):
        endings = ("succeeded", "failed", "crashed", "timed_out", "canceled", "expired")
        assert sum(value(found, f"trigger_celery_run_{e}_total", **labels) for e in endings) == 1


@pytest.mark.parametrize("addr", ["127.0.0.1", "::1"])
def test_the_exporter_serves_the_same_counters_on_its_own_port(own, counting, log_dir, addr):
    """On an IPv4 address or an IPv6 one ("--addr ::1"; it refused any before)."""
    own.worker(env=METRICS_ENV)
    own.beat(env=METRICS_ENV)
    handle = tasks.trigger("hello-world", {"message": "exported"})
    finished(handle)
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((addr, 0))
        port = s.getsockname()[1]
    host = f"[{addr}]" if ":" in addr else addr
    exporter = Process(
        "metrics-exporter",
        [sys.executable, "-m", "django", "trigger_metrics", "--addr", addr, "--port", str(port)],
        log_dir,
        METRICS_ENV,
    )
    try:
        wait_for(lambda: "serving metrics" in exporter.log() or not exporter.alive(), timeout=60)
        assert exporter.alive(), exporter.log()
        hello = {"name": "hello-world", "queue_name": "hello-world"}

        def exported():
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as page:
                found = samples(page.read().decode())
            # The worker counts the end just after committing it (see scrape_counted).
            return found if value(found, "trigger_celery_run_succeeded_total", **hello) else None

        found = wait_for(exported, what="the exporter to count the run")
    finally:
        exporter.stop()
    assert value(found, "trigger_celery_run_triggered_total", **hello) == 1
    assert value(found, "trigger_celery_run_succeeded_total", **hello) == 1


def test_allowed_ips_let_in_their_addresses_also_as_a_dual_stack_server_sees_them(
    settings, client, db
):
    settings.TRIGGER_CELERY = {
        **settings.TRIGGER_CELERY,
        "METRICS": {"ALLOWED_IPS": ["10.0.0.0/8"]},
    }
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="11.1.2.3").status_code == 403
    # gunicorn/uvicorn bound to [::] give an IPv4 client's address IPv4-mapped.
    assert client.get("/metrics", REMOTE_ADDR="::ffff:10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::ffff:11.1.2.3").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="2001:db8::1").status_code == 403


def test_bad_metrics_settings_name_the_value(settings):
    # The token is a secret: said by its type or length, never echoed.
    assert metrics_problems({"TOKEN": "short"}) == [
        "TRIGGER_CELERY['METRICS']['TOKEN'] must be a string of at least 16 characters, "
        "got 5 characters"
    ]
    assert metrics_problems({"TOKEN": 1234567890123456789}) == [
        "TRIGGER_CELERY['METRICS']['TOKEN'] must be a string of at least 16 characters, got int"
    ]
    assert any("'10.0.0.300'" in p for p in metrics_problems({"ALLOWED_IPS": ["10.0.0.300"]}))
    assert any("'TOKENS'" in p for p in metrics_problems({"TOKENS": "x"}))
    assert metrics_problems({"TOKEN": TOKEN, "ALLOWED_IPS": ["10.0.0.0/8"]}) == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--port", "99999"], "99999"),
        (["--port", "-1"], "-1"),
        (["--addr", "999.1.1.1", "--port", "0"], "999.1.1.1"),
    ],
)
def test_the_exporter_refuses_an_address_it_cannot_serve_on_naming_it(args, named):
    with pytest.raises(CommandError, match=re.escape(named)):
        call_command("trigger_metrics", *args)


def test_the_exporter_names_a_port_another_process_holds():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"127.0.0.1:{port}"):
            call_command("trigger_metrics", "--port", str(port))


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_a_bad_metrics_setting_is_named_by_the_worker_and_beat(own, process):
    """Celery runs no system checks: E301 was said by ``manage.py check`` only, never by
    the worker and beat that count (nor under a WSGI server that runs no checks)."""
    env = {"TC_METRICS_ALLOWED_IPS": "10.0.0.300"}
    started = own.worker(concurrency=1, env=env) if process == "worker" else own.beat(env=env)
    wait_for(lambda: "trigger_celery.E301" in started.log(), timeout=30, what="the check")
    line = next(line for line in started.log().splitlines() if "trigger_celery.E301" in line)
    assert "ERROR" in line
    assert "'10.0.0.300'" in line


def test_an_attempt_whose_process_died_adds_no_runtime(own, counting, client):
    """Its end is when its lease ran out and the crash was found, not when it died: one
    SIGKILL added a lease's worth of runtime to the histogram."""
    own.worker(env=METRICS_ENV)
    own.beat(env=METRICS_ENV)
    handle = tasks.trigger("dies", {"die_on": [1]})  # attempt 1's process dies
    run = finished(handle, timeout=90)
    assert [(a.number, a.status) for a in run.attempts] == [(1, "CRASHED"), (2, "COMPLETED")]
    dies = {"name": "dies", "queue_name": "dies-1"}
    found = scrape_counted(
        client,
        ("trigger_celery_run_succeeded_total", dies, 1),
        ("trigger_celery_run_retried_total", dies, 1),
    )
    assert value(found, "trigger_celery_run_started_total", **dies) == 2
    assert value(found, "trigger_celery_run_runtime_seconds_count", **dies) == 1
    assert value(found, "trigger_celery_run_runtime_seconds_bucket", le="+Inf", **dies) == 1


@pytest.mark.parametrize(
    "bad",
    ["yes", {"ALLOWED_IPS": ["10.0.0.300"]}, {"TOKEN": "short"}],
    ids=["not-a-dict", "bad-address", "short-token"],
)
def test_a_bad_metrics_setting_under_a_server_that_runs_no_checks_is_refused_not_a_500(
    settings, client, db, caplog, bad
):
    settings.TRIGGER_CELERY = {**settings.TRIGGER_CELERY, "METRICS": bad}
    with caplog.at_level("ERROR", logger="trigger_celery.metrics"):
        response = client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer short")
    assert response.status_code == 503
    assert b"misconfigured" in response.content
    assert "300" not in response.content.decode()  # the setting is named in the log only
    assert metrics_problems(bad)[0] in caplog.text
