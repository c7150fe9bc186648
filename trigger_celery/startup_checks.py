"""What a worker or beat says when it starts into a deployment that cannot serve it.

System checks (``checks.py``) read settings; these read what only a running process
sees, and log an error that says what to do instead of failing later, one run at a time:

* ``celery beat`` started with another scheduler (``-S django``, or Celery's default):
  nothing fires schedules, delayed runs, due retries, expiry or crash recovery;
* a release whose migrations were not applied (``manage.py migrate`` forgotten);
* settings ``manage.py check`` would refuse (a misspelt key, a wrong type): Celery
  does not run Django's system checks, so a worker would run on the defaults;
* a Redis store that may evict keys (``maxmemory`` with a policy other than
  ``noeviction``): runs it forgets wait until the next reconcile, limits it forgets
  are not held.

A check that cannot ask (the database or Redis down) stays quiet: the process's own
outage handling reports that.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from celery.utils.imports import load_extension_class_names, symbol_by_name
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from redis.exceptions import RedisError

from trigger_celery.beat import Scheduler
from trigger_celery.checks import check_settings, queue_limit_warnings
from trigger_celery.conf import get_settings
from trigger_celery.coordination.factory import get_store
from trigger_celery.coordination.redis import RedisStore
from trigger_celery.metrics.recorder import check_metrics
from trigger_celery.migration_state import unapplied_migrations

log = logging.getLogger("trigger_celery.startup")
FIRST_MIGRATION = "0001_initial"
OUR_SCHEDULER = "trigger_celery.beat:Scheduler"


def scheduler_problem(scheduler_cls: Any) -> str | None:
    """Why a beat with ``scheduler_cls`` (a class, a dotted path or a ``-S`` alias)
    does not serve trigger_celery, or None when it does."""
    try:
        aliases = dict(load_extension_class_names("celery.beat_schedulers"))
        found = symbol_by_name(scheduler_cls, aliases=aliases)
    except Exception:  # beat itself reports a scheduler it cannot load
        return None
    if isinstance(found, type) and issubclass(found, Scheduler):
        return None
    name = f"{found.__module__}.{found.__qualname__}" if isinstance(found, type) else found
    return (
        f"celery beat runs the scheduler {name}, not trigger_celery's: no schedule fires, "
        "and delayed runs, due retries, ttl expiry and crash recovery wait for a beat "
        f"that runs it. Start beat with -S {OUR_SCHEDULER} (or without -S and "
        f"CELERY_BEAT_SCHEDULER = '{OUR_SCHEDULER}' in settings); it sends "
        "django-celery-beat's periodic tasks too"
    )


def migrations_problem(using: str = DEFAULT_DB_ALIAS) -> str | None:
    missing = unapplied_migrations(using)
    if not missing:
        return None
    name = connections[using].settings_dict.get("NAME")
    if missing[0] == FIRST_MIGRATION:
        return (
            f"the database {name!r} has no trigger_celery tables (migrate was never run "
            "on it): run `python manage.py migrate`, then restart this process; until "
            "then nothing can be triggered or run"
        )
    return (
        f"the database {name!r} lacks trigger_celery migration(s) {', '.join(missing)}: "
        "run `python manage.py migrate` with this release (old processes keep working "
        "against the new tables), then restart this process; until then runs that need "
        "them fail"
    )


def eviction_problem() -> str | None:
    """Why the Redis store may lose keys under memory pressure, or None."""
    if get_settings().store_kind != "redis":
        return None
    store = get_store()
    if not isinstance(store, RedisStore):
        return None
    memory = store.client.info("memory")
    policy = str(memory.get("maxmemory_policy", "noeviction"))
    limit = int(memory.get("maxmemory", 0) or 0)
    if policy == "noeviction" or limit == 0:
        return None
    return (
        f"the Redis of TRIGGER_CELERY['REDIS_URL'] has maxmemory {limit} bytes with "
        f"maxmemory-policy {policy}: when full it drops keys, and the runs, slots and "
        "limits they hold are lost until the next reconcile. Set maxmemory-policy "
        "noeviction (Redis then refuses writes when full, and triggers raise)"
    )


def report_settings() -> int:
    """Log what trigger_celery's system checks find (warnings and errors); how many."""
    every = (*check_settings(), *check_metrics(), *queue_limit_warnings())
    found = [m for m in every if m.level >= checks.WARNING]
    for message in found:
        hint = f" ({message.hint})" if message.hint else ""
        level = logging.ERROR if message.level >= checks.ERROR else logging.WARNING
        log.log(level, "trigger_celery: %s: %s%s", message.id, message.msg, hint)
    return len(found)


def _report(*problems: Any) -> None:
    for problem_of in problems:
        try:
            problem = problem_of()
        except (DatabaseError, RedisError, OSError):
            continue  # unreachable: the process's outage handling says so
        if problem:
            log.error("trigger_celery: %s", problem)


def _report_settings() -> None:
    try:
        report_settings()
    except Exception:  # a check that breaks must not keep the process from starting
        log.exception("trigger_celery: could not check the settings")


def on_worker_ready(**_: Any) -> None:
    _report_settings()
    _report(migrations_problem, eviction_problem)


def on_beat_init(sender: Any = None, **_: Any) -> None:
    _report_settings()
    scheduler = getattr(sender, "scheduler_cls", None)
    _report(lambda: scheduler_problem(scheduler), migrations_problem, eviction_problem)


def connect() -> None:
    signals.worker_ready.connect(on_worker_ready, weak=False, dispatch_uid="tc_startup_worker")
    signals.beat_init.connect(on_beat_init, weak=False, dispatch_uid="tc_startup_beat")
