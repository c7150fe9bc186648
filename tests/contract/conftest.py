"""One store fixture, parametrized over every implementation: one suite proves both."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from trigger_celery.coordination.base import CoordinationStore, EnvironmentLimits


@pytest.fixture(params=["redis", "database"])
def store(request: pytest.FixtureRequest, transactional_db: None) -> Iterator[CoordinationStore]:
    if request.param == "redis":
        from trigger_celery.coordination.redis import RedisStore

        client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
        try:
            client.ping()
        except redis.RedisError:
            if os.environ.get("CI"):
                pytest.fail(f"Redis is not reachable at {settings.REDIS_URL}")
            pytest.skip(f"Redis is not reachable at {settings.REDIS_URL}")
        s: CoordinationStore = RedisStore(client, namespace=f"contract-{uuid.uuid4().hex[:8]}")
    else:
        from trigger_celery.coordination.database import DatabaseStore

        s = DatabaseStore()
    # A store refuses to claim until the engine has given it the environment limits.
    s.set_environment_limits(EnvironmentLimits())
    yield s
    s.flush()
