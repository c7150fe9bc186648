"""One store fixture, parametrized over every implementation: one suite proves both."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from trigger_celery.coordination.base import CoordinationStore, EnvironmentLimits


def _redis_store() -> CoordinationStore:
    from trigger_celery.coordination.redis import RedisStore

    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {settings.REDIS_URL}")
        pytest.skip(f"Redis is not reachable at {settings.REDIS_URL}")
    return RedisStore(client, namespace=f"contract-{uuid.uuid4().hex[:8]}")


def _configured(s: CoordinationStore) -> Iterator[CoordinationStore]:
    # A store refuses to claim until the engine has given it the environment limits.
    s.set_environment_limits(EnvironmentLimits())
    yield s
    s.flush()


@pytest.fixture(params=["redis", "database"])
def store(request: pytest.FixtureRequest, transactional_db: None) -> Iterator[CoordinationStore]:
    if request.param == "redis":
        yield from _configured(_redis_store())
    else:
        from trigger_celery.coordination.database import DatabaseStore

        yield from _configured(DatabaseStore())


@pytest.fixture
def redis_store() -> Iterator[CoordinationStore]:
    """The Redis store alone, for what only it does (``claim_new``)."""
    yield from _configured(_redis_store())
