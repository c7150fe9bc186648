"""Deployments an operator got wrong: a worker or beat says so when it starts, with what
to do, instead of runs that quietly never start."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.integration.harness import wait_for
from trigger_celery import runs, tasks

pytestmark = pytest.mark.integration

APP = "trigger_celery"
WRONG_SCHEDULER = "not trigger_celery's"


@pytest.mark.parametrize(
    ("scheduler", "named"),
    [
        ("django", "django_celery_beat.schedulers.DatabaseScheduler"),
        ("celery.beat:PersistentScheduler", "celery.beat.PersistentScheduler"),
    ],
)
def test_a_beat_started_with_another_scheduler_says_nothing_of_ours_will_fire(
    own, scheduler, named
):
    """``celery beat -S django`` (a django-celery-beat habit) ran the periodic tasks and
    nothing of ours: a delayed run stayed DELAYED, and no line said why."""
    beat = own.beat(scheduler=scheduler)
    wait_for(lambda: WRONG_SCHEDULER in beat.log(), timeout=30, what="beat to name its scheduler")
    line = next(line for line in beat.log().splitlines() if WRONG_SCHEDULER in line)
    assert named in line
    assert "-S trigger_celery.beat:Scheduler" in line


def test_a_beat_with_our_scheduler_does_not_complain(own):
    beat = own.beat()
    handle = tasks.trigger("echo", {}, delay=1)
    own.worker(concurrency=1)
    wait_for(lambda: runs.retrieve(handle).status == "COMPLETED", what="the delayed run")
    assert WRONG_SCHEDULER not in beat.log()
    assert "lacks trigger_celery migration" not in beat.log()


def _migrate(target: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


def test_a_worker_started_before_migrate_names_the_missing_migration(own):
    """A release deployed without ``manage.py migrate``: the worker logged one traceback
    per start-up step ("relation ... does not exist") and triggers with an idempotency
    key raised it too; nothing said to run migrate."""
    executor = MigrationExecutor(connection)
    latest = [node for node in executor.loader.graph.leaf_nodes() if node[0] == APP]
    before = executor.loader.graph.node_map[latest[0]].parents
    (previous,) = [node for node in before if node[0] == APP]
    _migrate([previous])
    try:
        worker = own.worker(concurrency=1)
        wait_for(lambda: "lacks trigger_celery" in worker.log(), timeout=30, what="the error")
        line = next(line for line in worker.log().splitlines() if "lacks trigger_celery" in line)
        assert latest[0][1] in line
        assert "python manage.py migrate" in line
    finally:
        _migrate(latest)


def test_a_worker_started_on_a_database_never_migrated_says_so_without_tracebacks(own):
    """``manage.py migrate`` never run: the worker logged a traceback for each start-up
    step (and another every 5 s) before the one line that said what to do."""
    executor = MigrationExecutor(connection)
    latest = [node for node in executor.loader.graph.leaf_nodes() if node[0] == APP]
    _migrate([(APP, None)])
    try:
        worker = own.worker(concurrency=1)
        wait_for(
            lambda: "PENDING_VERSION runs are not checked" in worker.log(),
            timeout=30,
            what="the worker's first check for PENDING_VERSION runs",
        )
        log = worker.log()
        assert "has no trigger_celery tables" in log
        assert "python manage.py migrate" in log
        assert "start-up step configure_queues failed, the database is not migrated" in log
        assert "Traceback" not in log
    finally:
        _migrate(latest)


def test_a_worker_on_a_redis_that_evicts_keys_says_so(own):
    """Redis under ``maxmemory`` with ``allkeys-lru`` dropped the store's keys under load
    (runs stayed QUEUED until a reconcile put them back), and nothing warned of it."""
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    was = client.config_get("maxmemory*")
    client.config_set("maxmemory", 512 * 1024 * 1024)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        worker = own.worker(concurrency=1)
        wait_for(lambda: "maxmemory-policy" in worker.log(), timeout=30, what="the warning")
        line = next(line for line in worker.log().splitlines() if "maxmemory-policy" in line)
        assert "allkeys-lru" in line
        assert "noeviction" in line
    finally:
        client.config_set("maxmemory-policy", was["maxmemory-policy"])
        client.config_set("maxmemory", was["maxmemory"])


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_a_misspelt_setting_is_named_by_the_worker_and_beat(own, process):
    """Celery does not run Django's system checks: a worker with
    ``TRIGGER_CELERY["CONCURENCY_LIMIT"]`` ran with the default limit and said nothing
    (only ``manage.py check`` named the key)."""
    env = {"TC_SETTINGS_TYPO": "CONCURENCY_LIMIT"}
    started = own.worker(concurrency=1, env=env) if process == "worker" else own.beat(env=env)
    wait_for(lambda: "trigger_celery.E002" in started.log(), timeout=30, what="the check")
    line = next(line for line in started.log().splitlines() if "trigger_celery.E002" in line)
    assert "ERROR" in line
    assert "'CONCURENCY_LIMIT'" in line
