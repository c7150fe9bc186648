"""Integration fixtures: a real Redis, the real test database, real worker processes.

Workers and beat are started once per session against the database pytest-django
created; every test uses ``transactional_db`` so what it writes is committed and
visible to them. Tests that need their own worker shape start one with ``start_worker``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests.integration.harness import Process, start_beat, start_worker

pytestmark = pytest.mark.integration


def _redis_reachable() -> bool:
    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not _redis_reachable():
        message = f"Redis is not reachable at {settings.REDIS_URL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return settings.REDIS_URL


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("processes")


@pytest.fixture(scope="session")
def services(
    django_db_setup, django_db_blocker, redis_url: str, log_dir: Path
) -> Iterator[dict[str, Process]]:
    """One worker (prefork, 4 processes) and one beat for the whole session."""
    redis.Redis.from_url(redis_url).flushdb()
    with django_db_blocker.unblock():
        worker = start_worker(log_dir, name="main-worker")
        beat = start_beat(log_dir, name="main-beat")
    yield {"worker": worker, "beat": beat}
    beat.stop()
    worker.stop()


@pytest.fixture
def live(services: dict[str, Process], transactional_db) -> dict[str, Process]:
    """Request this in a test that needs the shared worker and beat."""
    for proc in services.values():
        assert proc.alive(), f"{proc.name} died:\n{proc.log()[-4000:]}"
    return services
