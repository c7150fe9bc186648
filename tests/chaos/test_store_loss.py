"""Limits hold while the store is reconciled in a loop, and through a FLUSHDB."""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from io import StringIO

import redis
from django.conf import settings
from django.core.management import call_command

from tests.integration.harness import Process, finished, max_overlap, wait_for
from tests.taskapp import events
from trigger_celery import queues, runs, tasks
from trigger_celery.coordination import keys
from trigger_celery.models import Run

# The long version: TC_CHAOS_SCALE=10 ./scripts/test tests/chaos (see docs/reliability.md).
SCALE = int(os.environ.get("TC_CHAOS_SCALE", "1"))


def intervals(tag: str) -> list[tuple[float, float]]:
    return [(v[2], v[3]) for v in events.values(f"interval:{tag}")]


def test_a_limit_1_queue_never_runs_two_while_reconcile_runs_in_a_loop(own, log_dir, tmp_path):
    count = 200 * SCALE
    own.worker(concurrency=4)
    own.beat()
    stop, passes = tmp_path / "stop", tmp_path / "passes"
    loop = Process(
        "reconcile-loop",
        [sys.executable, "tests/chaos/reconcile_loop.py", str(stop), str(passes)],
        log_dir,
    )
    try:
        handles = [
            tasks.trigger("after-death", {"tag": "loop", "seconds": 0.02}) for _ in range(count)
        ]
        for handle in handles:
            assert finished(handle, timeout=120).status == "COMPLETED"
    finally:
        stop.touch()
        wait_for(lambda: not loop.alive(), timeout=30, what="the reconcile loop to stop")
    reconciled = passes.read_text().count("reconciled") if passes.exists() else 0
    assert reconciled >= 5, f"the reconcile loop ran {reconciled} times:\n{loop.log()[-2000:]}"
    assert len(intervals("loop")) == count
    assert max_overlap(intervals("loop")) == 1


def flushed(client: redis.Redis) -> int:
    """FLUSHDB, and the database's size right after it in the same transaction: the
    proof that the flush happened (a live worker may write again a moment later)."""
    pipe = client.pipeline(transaction=True)
    pipe.flushdb()
    pipe.dbsize()
    done, size = pipe.execute()
    assert done is True
    return size


def test_a_flushdb_while_a_limit_1_queue_executes_keeps_the_limit(own):
    own.worker(concurrency=4)
    own.beat()
    client = redis.Redis.from_url(settings.REDIS_URL)
    first = [tasks.trigger("after-death", {"tag": "flushed", "seconds": 0.3}) for _ in range(5)]
    wait_for(
        lambda: any(runs.retrieve(h).status == "EXECUTING" for h in first),
        what="a run to execute",
    )
    assert client.dbsize() > 0
    assert flushed(client) == 0
    second = [tasks.trigger("after-death", {"tag": "flushed", "seconds": 0.3}) for _ in range(5)]
    for handle in first + second:
        assert finished(handle, timeout=120).status == "COMPLETED"
    assert len(intervals("flushed")) == 10
    assert max_overlap(intervals("flushed")) == 1


def test_a_flushdb_in_the_middle_of_a_rate_window_keeps_the_rate(own):
    """A restored store learns the starts of the current window from the database: a
    flush right after four starts of a "4/s" queue lets none start before the second
    is up (it let four more start at once)."""
    own.worker(concurrency=2)
    own.worker(concurrency=2)
    own.beat()
    client = redis.Redis.from_url(settings.REDIS_URL)
    handles = [tasks.trigger("rated", {}) for _ in range(12)]
    ids = [h.id for h in handles]
    wait_for(
        lambda: Run.objects.filter(id__in=ids, started_at__isnull=False).count() >= 4,
        what="the window's four starts",
    )
    assert client.dbsize() > 0
    assert flushed(client) == 0
    for handle in handles:
        assert finished(handle, timeout=120).status == "COMPLETED"
    assert client.dbsize() > 0  # restored
    starts = sorted(Run.objects.filter(id__in=ids).values_list("started_at", flat=True))
    assert all(b - a >= timedelta(seconds=1) for a, b in zip(starts, starts[4:], strict=False))


def test_a_queue_declared_only_where_runs_are_triggered_gets_its_rate_back_after_a_flush(
    own, monkeypatch
):
    """The store a worker restores knows only the queues the worker declares; the
    triggering process pushes its own again (after REPUSH_SECONDS, 0 here), so its "4/s"
    holds after the flush (it was unlimited until that process restarted)."""
    from trigger_celery import queue
    from trigger_celery.engine import queueing
    from trigger_celery.engine.registry import registry

    name = "rated-here-only-flushed"
    queue(name=name, rate_limit="4/s")
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        own.worker(concurrency=4)
        own.beat()
        first = tasks.trigger("echo", {}, queue=name)  # pushes the queue's limits
        assert finished(first).status == "COMPLETED"
        assert client.dbsize() > 0
        assert flushed(client) == 0
        # Anything that asks the store now finds it empty and restores it.
        wait_for(lambda: client.dbsize() > 0, what="a process to restore the store")
        monkeypatch.setattr(queueing, "REPUSH_SECONDS", 0.0)
        handles = [tasks.trigger("echo", {}, queue=name) for _ in range(9)]
        for handle in handles:
            assert finished(handle, timeout=60).status == "COMPLETED"
    finally:
        registry.queues.pop(name, None)
        registry._declared.discard(name)
    ids = [h.id for h in handles]
    starts = sorted(Run.objects.filter(id__in=ids).values_list("started_at", flat=True))
    assert all(b - a >= timedelta(seconds=1) for a, b in zip(starts, starts[4:], strict=False))


def evict_all_but(hot: list[redis.Redis], cold: list[str], client: redis.Redis) -> int:
    """Make the Redis of ``client`` evict the keys ``cold`` for real, under ``allkeys-lru``:
    filler written (database 9), then ``maxmemory`` lowered below its use step by step
    until every cold key is gone. Every other key of the ``hot`` databases is read all
    along, as a live system reads the keys it uses, so LRU keeps those and takes the cold
    keys and the filler. Returns how many bytes Redis had to give up."""
    config = client.config_get("maxmemory*")
    filler = redis.Redis.from_url(settings.REDIS_URL.rsplit("/", 1)[0] + "/9")
    keep = [(db, [k for k in db.scan_iter(count=1000) if k not in cold]) for db in hot]

    def read_hot() -> None:
        for db, names in keep:
            if names:
                db.touch(*names)

    # LRU measures idle time in whole seconds: cold keys, then filler, then hot keys.
    time.sleep(2.2)
    pipe = filler.pipeline(transaction=False)
    for i in range(256):
        pipe.set(f"filler:{i}", b"x" * 16_384)
    pipe.execute()
    time.sleep(1.2)
    read_hot()
    start = client.info("memory")["used_memory"]
    limit = start
    try:
        client.config_set("maxmemory-policy", "allkeys-lru")
        while client.exists(*cold) and limit > start - 4_000_000:
            limit -= 65_536
            client.config_set("maxmemory", limit)
            read_hot()
            filler.set("filler:probe", b"x")  # a write: Redis evicts before it
    finally:
        client.config_set("maxmemory", config["maxmemory"])
        client.config_set("maxmemory-policy", config["maxmemory-policy"])
        filler.flushdb()
    assert client.info("stats")["evicted_keys"] > 0
    return start - limit


def test_queued_runs_whose_sub_queue_redis_evicted_run_once_after_reconcile(own):
    """Redis under ``maxmemory`` with ``allkeys-lru`` evicts the keys used least lately:
    it dropped a queue's sub-queue and its indexes, and kept the run -> sub-queue hash
    every trigger touches. ``trigger_reconcile`` took that hash as proof the runs were
    queued and re-enqueued 0 of them: they stayed QUEUED for good."""
    count = 20 * SCALE
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL, decode_responses=True)
    p = keys.prefix(settings.TRIGGER_CELERY["ENVIRONMENT"])
    sub_queue = keys.sub_queue(p, keys.sub_queue_id("dies-1", None))
    queues.pause("dies-1")  # they stay QUEUED, in the store, until the eviction is over
    handles = [
        tasks.trigger("after-death", {"tag": "evicted", "seconds": 0.02}) for _ in range(count)
    ]
    assert {runs.retrieve(h).status for h in handles} == {"QUEUED"}
    assert client.zcard(sub_queue) == count
    cold = [sub_queue, f"{p}ring:dies-1", f"{p}heads:dies-1", f"{p}queues", f"{p}due"]
    evict_all_but([client, broker], cold, client)
    # The fault: Redis itself dropped the sub-queue and its indexes, and kept the rest.
    assert client.exists(*cold) == 0
    assert all(client.hexists(keys.entry(p), h.id) for h in handles)
    out = StringIO()
    call_command("trigger_reconcile", stdout=out)
    assert f"re-enqueued {count} run(s)" in out.getvalue()
    queues.resume("dies-1")
    own.worker(concurrency=4)
    own.beat()
    for handle in handles:
        assert finished(handle, timeout=60).status == "COMPLETED"
    assert len(intervals("evicted")) == count  # each ran once
    assert max_overlap(intervals("evicted")) == 1
    ids = [h.id for h in handles]
    assert set(Run.objects.filter(id__in=ids).values_list("attempt_count", flat=True)) == {1}
