"""The same no-op work as a plain Celery task and as a trigger_celery task.

Each records its start time in Redis, so the benchmark sees starts and completions
without a result backend.
"""

import time

import redis
from celery import shared_task
from django.conf import settings

from trigger_celery import queue, task

_redis = None


def _client():
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL)
    return _redis


def _mark(kind: str, index: int) -> None:
    pipe = _client().pipeline(transaction=False)
    pipe.hset(f"bench:{kind}:start", index, repr(time.time()))
    pipe.incr(f"bench:{kind}:done")
    pipe.execute()


@shared_task(name="bench.plain_noop", ignore_result=True)
def plain_noop(index: int) -> None:
    _mark("plain", index)


@shared_task(name="bench.results_noop", ignore_result=False)
def results_noop(index: int) -> None:
    """Plain Celery again, its result recorded by django-celery-results (the worker of
    that system runs with ``BENCH_RESULTS=1``: database backend, extended, started)."""
    _mark("results", index)


@task(id="bench-noop", retry={"max_attempts": 1})
def trigger_noop(payload, ctx):
    _mark("trigger", payload["i"])
    return None


LIMIT_1 = queue(name="bench-limit-1", concurrency_limit=1)
PER_KEY_1 = queue(name="bench-per-key-1", concurrency_limit=1)


@task(id="bench-limit1", queue=LIMIT_1, retry={"max_attempts": 1})
def limit1_noop(payload, ctx):
    r = _client()
    r.hset("bench:limit1:start", payload["i"], repr(time.time()))
    r.hset("bench:limit1:end", payload["i"], repr(time.time()))
    r.incr("bench:limit1:done")


@task(id="bench-keyed", queue=PER_KEY_1, retry={"max_attempts": 1})
def keyed_noop(payload, ctx):
    _mark("keyed", payload["i"])


@task(id="bench-fanout", retry={"max_attempts": 1})
def fanout(payload, ctx):
    results = trigger_noop.batch_trigger_and_wait(
        [{"payload": {"i": i}} for i in range(payload["n"])]
    )
    return sum(1 for r in results.runs if r.ok)


@task(id="bench-parent", retry={"max_attempts": 1})
def parent_of_one(payload, ctx):
    return trigger_noop.trigger_and_wait({"i": payload["i"]}).ok
