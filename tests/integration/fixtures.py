"""Integration fixtures: a real Redis, the real test database, real worker processes.

Workers and beat are started once per session against the database pytest-django
created; every test uses ``transactional_db`` so what it writes is committed and
visible to them. Tests that need their own worker shape start one with ``start_worker``.

``tests/conftest.py`` registers these once for the integration and the chaos tests. A
second registration (a conftest of each directory importing them) would make a second
session-wide ``services``: in a session running both directories, the ``own`` of a
chaos test would stop its own copy and leave the integration tests' shared worker
running, and that worker would take the runs the test's own worker was started for.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.test import Client

from tests.integration.harness import Process, start_beat, start_worker


def _redis_reachable() -> bool:
    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker) -> Iterator[None]:
    """pytest-django's, and before its teardown drops the test database on PostgreSQL,
    the end of every other session still connected to it. A thread of this process that
    outlived its test (a monitor's sweep, an after-commit dispatch) or a worker process
    that is still exiting keeps a connection; the DROP then fails with "is being
    accessed by other users" and the whole session reports an error."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        ended = cursor.fetchone()[0]
    if ended:
        print(f"\nended {ended} other session(s) on the test database before dropping it")


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


class Services:
    """The session's shared worker and beat, which a test may stop and get back."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, Process] = {}
        self.generation = 0

    def start(self) -> None:
        self.generation += 1
        self.procs["worker"] = start_worker(self.log_dir, name=f"main-worker-{self.generation}")
        self.procs["beat"] = start_beat(self.log_dir, name=f"main-beat-{self.generation}")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        self.procs.clear()

    def check_alive(self) -> None:
        for proc in self.procs.values():
            assert proc.alive(), f"{proc.name} died:\n{proc.log()[-4000:]}"


@pytest.fixture(scope="session")
def services(
    django_db_setup, django_db_blocker, redis_url: str, log_dir: Path
) -> Iterator[Services]:
    """One worker (prefork, 4 processes) and one beat for the whole session."""
    redis.Redis.from_url(redis_url).flushdb()
    svc = Services(log_dir)
    with django_db_blocker.unblock():
        svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def live(services: Services, transactional_db) -> Services:
    """Request this in a test that needs the shared worker and beat."""
    if not services.procs:
        services.start()
    services.check_alive()
    return services


_user_count = itertools.count(1)


@pytest.fixture
def logged_in_client() -> Callable[..., Client]:
    """Make a test client logged in as a new user, for the dashboard and admin tests.

    Staff holding exactly the permissions named by codename, by default;
    ``superuser=True`` holds them all, ``staff=False`` is a plain user. With ``csrf=True``
    the CSRF token is checked (Django's test client skips the check otherwise).

    >>> viewer = logged_in_client("view_run")
    """
    from django.contrib.auth.models import Permission, User

    def make(
        *codenames: str, staff: bool = True, superuser: bool = False, csrf: bool = False
    ) -> Client:
        name = f"user{next(_user_count)}"
        if superuser:
            user = User.objects.create_superuser(name, password="x")
        else:
            user = User.objects.create_user(name, password="x", is_staff=staff)
            for codename in codenames:
                user.user_permissions.add(Permission.objects.get(codename=codename))
        client = Client(enforce_csrf_checks=csrf)
        client.force_login(user)
        return client

    return make


_own_count = itertools.count(1)  # one name per process of the session: logs never mix


class OwnProcesses:
    """Workers and beats a test starts with its own shape; all stopped at its end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Process] = []

    def worker(self, **kwargs) -> Process:
        kwargs.setdefault("name", f"own-worker-{os.getpid()}-{next(_own_count)}")
        proc = start_worker(self.log_dir, **kwargs)
        self.procs.append(proc)
        return proc

    def beat(self, **kwargs) -> Process:
        kwargs.setdefault("name", f"own-beat-{os.getpid()}-{next(_own_count)}")
        proc = start_beat(self.log_dir, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.alive():
                proc.stop()
            elif not proc._log.closed:
                proc._log.close()


@pytest.fixture
def own(services: Services, transactional_db, log_dir: Path) -> Iterator[OwnProcesses]:
    """Stop the shared worker and beat; the test starts exactly the processes it wants."""
    services.stop()
    procs = OwnProcesses(log_dir)
    try:
        yield procs
    finally:
        procs.stop()


@pytest.fixture
def fresh_store(own: OwnProcesses) -> Iterator[OwnProcesses]:
    """``own``, with no slot held by an earlier test's run, no message left in the
    broker, and every queue asked afresh (``dispatch.claim_first``); what the test sent
    and did not run is purged after it."""
    from celery import current_app

    from trigger_celery.coordination.factory import get_store
    from trigger_celery.engine import dispatch, queueing

    current_app.control.purge()
    get_store().flush()
    queueing.reset_caches()
    dispatch.forget_full_queues()
    yield own
    current_app.control.purge()
    dispatch.forget_full_queues()


def _retry_flush_on_lock_conflicts() -> None:
    """Let the per-test flush retry when it meets a worker's transaction.

    The shared worker and beat keep running between tests, so the TRUNCATE (PostgreSQL)
    or DELETE (SQLite) that ends a transactional test can deadlock with, or wait on, one
    of their short transactions; the database then aborts one side. Retrying the flush
    is what a person would do; the tests' own assertions are untouched.
    """
    import time

    from django.core.management.base import CommandError
    from django.db import OperationalError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def teardown(self):  # type: ignore[no-untyped-def]
        for attempt in range(6):
            try:
                return original(self)
            except (CommandError, OperationalError):
                if attempt == 5:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return None

    TransactionTestCase._fixture_teardown = teardown


_retry_flush_on_lock_conflicts()
