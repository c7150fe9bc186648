"""A tiny event log in Redis, so tests can see what happened inside worker processes."""

import json
import time
from typing import Any

import redis
from django.conf import settings

_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    return _client


def record(key: str, value: Any) -> None:
    client().rpush(f"tc-test:{key}", json.dumps({"t": time.time(), "v": value}))


def read(key: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client().lrange(f"tc-test:{key}", 0, -1)]


def values(key: str) -> list[Any]:
    return [e["v"] for e in read(key)]
