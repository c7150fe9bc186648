"""The same no-op work as a plain Celery task and as a trigger_celery task.

Each records its start time in Redis, so the benchmark sees starts and completions
without a result backend.
"""

import time

import redis
from celery import shared_task
from django.conf import settings

from trigger_celery import task

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


@task(id="bench-noop", retry={"max_attempts": 1})
def trigger_noop(payload, ctx):
    _mark("trigger", payload["i"])
    return None
