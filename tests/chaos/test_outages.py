"""Outages of the services: Redis killed and restarted, PostgreSQL stopped for 30 s.

Redis is both the broker and the coordination store here, and it keeps nothing on disk,
so its restart loses every message, every queue entry and every slot. The database is
the record: every trigger that returned a handle must still end COMPLETED. While the
database itself is down, triggers fail with an error and leave nothing behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import redis
from django.conf import settings
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.integration.harness import wait_for
from tests.taskapp import events
from trigger_celery import runs, tasks
from trigger_celery.core.statuses import FINAL_STATUSES
from trigger_celery.models import Attempt, Run

SCALE = int(os.environ.get("TC_CHAOS_SCALE", "1"))
FINAL = {s.value for s in FINAL_STATUSES}


class PrivateRedis:
    """The Redis the suite started (``scripts/test``): killed and started again on its port."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        binary = os.environ.get("TC_REDIS_SERVER")
        if not binary:
            message = "TC_REDIS_SERVER is not set: run the suite with ./scripts/test"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.binary = binary
        self.port = int(self.client.connection_pool.connection_kwargs["port"])
        self.dir = self.client.config_get("dir")["dir"]

    def pid(self) -> int:
        return int(self.client.info("server")["process_id"])

    def up(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> int:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not self.up(), timeout=10, what="Redis to go down")
        return pid

    def start(self) -> None:
        subprocess.run(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "yes",
                "--dir", self.dir,
                "--pidfile", os.path.join(self.dir, "redis.pid"),
                "--logfile", os.path.join(self.dir, "redis.log"),
            ],
            check=True,
        )  # fmt: skip
        wait_for(self.up, timeout=20, what="Redis to come back")


def test_redis_killed_during_a_burst_loses_no_triggered_run(own):
    total = 5000 * SCALE
    kill_at, outage_seconds = total // 3, 3.0
    server = PrivateRedis(settings.REDIS_URL)
    worker = own.worker(concurrency=4)
    beat = own.beat()

    handles, refused = [], []
    killed_pid = None
    outage_started = 0.0
    for i in range(total):
        if i == kill_at:
            killed_pid = server.kill()
            outage_started = time.monotonic()
        # Back after outage_seconds, or sooner if triggers during the outage are so quick
        # that the burst would end first: its last third always meets Redis again.
        if outage_started and (
            time.monotonic() - outage_started > outage_seconds or i >= 2 * total // 3
        ):
            server.start()
            outage_started = 0.0
        try:
            # A task whose code does not use Redis itself: the outage is the engine's.
            handles.append(tasks.trigger("quiet", {"i": i}, tags=["burst"]))
        except Exception as exc:  # which errors reach a caller is the point
            refused.append((i, exc))

    # The fault happened: Redis was down and came back as a new, empty process.
    assert killed_pid is not None
    assert server.up() and server.pid() != killed_pid
    # While Redis was down a trigger either returned a handle or raised; nothing else.
    assert len(handles) + len(refused) == total
    for _, exc in refused:
        assert str(exc), f"an outage error without a message: {exc!r}"
    refused_items = {i for i, _ in refused}

    ids = [h.id for h in handles]
    wait_for(
        lambda: Run.objects.filter(id__in=ids, status="COMPLETED").count() == len(ids),
        timeout=300,
        interval=1.0,
        what="every triggered run to complete",
    )
    print(f"redis outage: {total} triggers, {len(handles)} handles, {len(refused)} refused")
    # No half-made runs: exactly one row per handle, none for a refused trigger.
    burst = Run.objects.with_tag("burst")
    assert burst.count() == len(handles)
    assert not {r.payload["i"] for r in burst} & refused_items
    # Nothing ran twice: one attempt per run.
    assert Attempt.objects.filter(run_id__in=ids).count() == len(ids)
    # The same worker and beat processes did it: they reconnected without a restart.
    assert worker.alive(), worker.log()[-4000:]
    assert beat.alive(), beat.log()[-4000:]
    assert "Connection to broker lost" in worker.log()


class PostgresServer:
    """The PostgreSQL cluster the PostgreSQL leg runs on, stopped and started for real."""

    def __init__(self) -> None:
        versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
        if not versions:
            pytest.fail("no PostgreSQL cluster to stop under /etc/postgresql")
        self.version = versions[-1]

    def _ctl(self, action: str) -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, "main", action]
            + (["-m", "fast"] if action == "stop" else []),
            check=True,
        )

    @staticmethod
    def up() -> bool:
        return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0

    def stop(self) -> None:
        self._ctl("stop")
        wait_for(lambda: not self.up(), timeout=30, what="PostgreSQL to stop")

    def start(self) -> None:
        if not self.up():
            self._ctl("start")
        wait_for(self.up, timeout=60, what="PostgreSQL to start")


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="stops the PostgreSQL server: the PostgreSQL leg"
)
def test_postgresql_stopped_for_30_seconds_under_load_loses_nothing(own):
    server = PostgresServer()
    lease = settings.TRIGGER_CELERY["LEASE_SECONDS"]
    # A django-celery-beat periodic task: beat reads it on every tick, outage or not.
    every_2s, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="through the outage", task="tests.plain_periodic", interval=every_2s, args='["pg"]'
    )
    worker = own.worker(concurrency=4)
    beat = own.beat()
    # Beat has the periodic task in hand: during the outage it is due every 2 s.
    wait_for(lambda: events.values("plain-periodic:pg"), timeout=30, what="a first periodic send")
    before = [tasks.trigger("steady", {"n": i, "seconds": 0.2}, tags=["pg"]) for i in range(200)]
    wait_for(
        lambda: Run.objects.filter(id__in=[h.id for h in before], status="EXECUTING").exists(),
        what="runs to execute",
    )

    refused = []
    server.stop()
    try:
        # The fault happened: a new connection is refused.
        with pytest.raises(Exception, match=r"(?i)connect|refused|closed|terminat"):
            connection.close()
            connection.ensure_connection()
        outage_ends = time.monotonic() + 30.0
        i = 0
        while time.monotonic() < outage_ends:
            try:
                tasks.trigger("steady", {"n": 1000 + i, "seconds": 0.2}, tags=["pg"])
            except Exception as exc:  # the error a caller gets while the database is down
                refused.append(exc)
            else:
                raise AssertionError("a trigger returned a handle while PostgreSQL was down")
            i += 1
            time.sleep(1.0)
    finally:
        server.start()
    assert len(refused) == i >= 20
    assert all("connect" in str(exc).lower() or "closed" in str(exc).lower() for exc in refused), [
        str(exc) for exc in refused[:3]
    ]

    # The same caller triggers again as soon as the database is back.
    after = [
        tasks.trigger("steady", {"n": 2000 + n, "seconds": 0.2}, tags=["pg"]) for n in range(20)
    ]
    handles = before + after

    # After recovery no run sits DEQUEUED or EXECUTING longer than a lease (plus the time
    # for a pump pass to reap it): whatever the outage interrupted moves on.
    stuck_at_recovery = set(
        Run.objects.filter(
            id__in=[h.id for h in before], status__in=["DEQUEUED", "EXECUTING"]
        ).values_list("id", "attempt_count")
    )
    time.sleep(lease + 5.0)
    still = set(
        Run.objects.filter(
            id__in=[h.id for h in before], status__in=["DEQUEUED", "EXECUTING"]
        ).values_list("id", "attempt_count")
    )
    assert not stuck_at_recovery & still, f"stuck since the outage: {stuck_at_recovery & still}"

    for handle in handles:
        assert runs.retrieve(handle).status in ("COMPLETED", "QUEUED", "DEQUEUED", "EXECUTING")
    wait_for(
        lambda: (
            Run.objects.filter(id__in=[h.id for h in handles], status="COMPLETED").count()
            == len(handles)
        ),
        timeout=180,
        interval=1.0,
        what="every run to complete",
    )
    print(f"postgres outage: {len(handles)} handles, {len(refused)} refused, stuck {len(still)}")
    # Nothing lost, no partial rows: exactly the runs whose trigger returned a handle.
    assert Run.objects.with_tag("pg").count() == len(handles)
    assert worker.alive(), worker.log()[-4000:]
    assert beat.alive(), beat.log()[-4000:]
    # Beat lived through it and sends the periodic task again.
    sent_before = len(events.values("plain-periodic:pg"))
    wait_for(
        lambda: len(events.values("plain-periodic:pg")) > sent_before,
        timeout=30,
        what="the periodic task to be sent after the outage",
    )


def test_a_cancel_while_redis_is_down_cancels_the_run_and_its_children(own):
    """The cancel is committed in the database; the store's part waits for it to come
    back. It raised the store's error, so the waiting parent's executing child ran on."""
    server = PrivateRedis(settings.REDIS_URL)
    own.worker(concurrency=2)
    own.beat()
    parent = tasks.trigger("waits-on-long-child", {})
    child_id = wait_for(
        lambda: (
            Run.objects.filter(parent_id=parent.id, status="EXECUTING")
            .values_list("id", flat=True)
            .first()
        ),
        what="the child to execute",
    )
    wait_for(lambda: runs.retrieve(parent).status == "WAITING", what="the parent to wait")
    # The child's code has recorded its start (in Redis): from here it touches Redis only
    # once it sees its signal. Killed sooner, that record fails the attempt on its own.
    wait_for(lambda: events.values(f"started:{child_id}"), what="the child's code to start")
    killed_pid = server.kill()
    assert not server.up()
    assert runs.cancel(parent.id).status == "CANCELED"  # no store error reaches the caller
    child = wait_for(
        lambda: (run := Run.objects.get(id=child_id)).status in FINAL and run,
        timeout=60,
        what="the child to end",
    )
    assert child.status == "CANCELED"
    server.start()
    assert server.pid() != killed_pid
    # Its worker stopped it (the test's event log lives in Redis: read the attempt).
    attempt = wait_for(
        lambda: Attempt.objects.filter(run_id=child_id, finished_at__isnull=False).first(),
        timeout=60,
        what="the child's attempt to end",
    )
    assert (attempt.number, attempt.status) == (1, "CANCELED")
    assert Attempt.objects.filter(run_id=child_id).count() == 1
