"""Redis killed and restarted during a burst of triggers: nothing lost, workers reconnect.

Redis is both the broker and the coordination store here, and it keeps nothing on disk,
so the restart loses every message, every queue entry and every slot. The database is
the record: every trigger that returned a handle must still end COMPLETED.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import redis
from django.conf import settings

from tests.integration.harness import wait_for
from trigger_celery import tasks
from trigger_celery.models import Attempt, Run

SCALE = int(os.environ.get("TC_CHAOS_SCALE", "1"))


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
        if outage_started and time.monotonic() - outage_started > outage_seconds:
            server.start()
            outage_started = 0.0
        try:
            handles.append(tasks.trigger("echo", {"i": i}, tags=["burst"]))
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
