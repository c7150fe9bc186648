"""Celery signal wiring: what a worker does when it starts.

* imports every installed app's ``trigger_init.py`` (global hooks and middleware);
* pushes queue limits from code to the coordination store;
* queues PENDING_VERSION runs of the tasks this worker knows;
* syncs the schedules declared in code (``schedules.task(cron=...)``);
* hands back runs that wait in a busy worker's prefetch buffer (``worker.prefetch``).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from typing import Any

from celery import signals
from django.db import close_old_connections

from trigger_celery.conf import get_settings
from trigger_celery.coordination.factory import reset_store_cache
from trigger_celery.core.hooks import global_hooks
from trigger_celery.engine import dispatch, promotions, queueing
from trigger_celery.engine.registry import app_modules, registry
from trigger_celery.engine.schedules import sync_declarative
from trigger_celery.migration_state import lacks_migrations
from trigger_celery.worker import log_fields, prefetch
from trigger_celery.worker.interrupts import install_wake_handler
from trigger_celery.worker.settings_hooks import named_hooks

log = logging.getLogger("trigger_celery.worker")
_imported = False


def import_trigger_init_modules() -> list[str]:
    """Import ``<app>.trigger_init`` for every installed app that has one (once).

    Raises ``SystemExit`` naming a module that fails to import: a worker would otherwise
    run every task without the global hooks and middleware it declares."""
    global _imported

    found: list[str] = []
    if _imported:
        return found
    for name in app_modules("trigger_init"):
        try:
            importlib.import_module(name)
        except Exception as exc:
            message = (
                f"trigger_celery cannot start: importing {name} failed: "
                f"{type(exc).__name__}: {exc} (its global hooks and middleware would be missing)"
            )
            log.critical(message, exc_info=True)
            raise SystemExit(message) from exc
        found.append(name)
    _imported = True
    return found


def register_hooks_from_settings() -> int:
    """Register the global hooks and middleware named in ``TRIGGER_CELERY`` (once).

    ``"HOOKS": {"on_failure": ["myapp.hooks.alert"]}``,
    ``"MIDDLEWARE": ["myapp.hooks.with_db"]`` (registered under its dotted path).
    Raises ``SystemExit`` naming every entry that is wrong: the worker does not start
    without a hook the project counts on.
    """
    global _settings_hooks_registered
    if _settings_hooks_registered:
        return 0
    settings = get_settings()
    found, problems = named_hooks(settings.HOOKS, settings.MIDDLEWARE)
    if problems:
        message = "trigger_celery cannot start: TRIGGER_CELERY " + "; ".join(
            text for _, text in problems
        )
        log.critical(message)
        raise SystemExit(message)
    for name, path, fn in found:
        if name == "middleware":
            global_hooks.add_middleware(path, fn)
        else:
            global_hooks.add(name, fn)
    _settings_hooks_registered = True
    return len(found)


_settings_hooks_registered = False


def on_worker_init(**_: Any) -> None:
    import_trigger_init_modules()
    register_hooks_from_settings()
    registry.ensure_discovered()


PENDING_VERSION_POLL_SECONDS = 5.0


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _promote_known() -> None:
    promoted = promotions.promote_pending_versions(list(registry.tasks))
    if promoted:
        log.info("queued %d run(s) that waited for a worker knowing their task", promoted)
        dispatch.dispatch_ready()


def _promote_forever() -> None:
    said_unmigrated = False
    while True:
        time.sleep(PENDING_VERSION_POLL_SECONDS)
        try:
            close_old_connections()
            _promote_known()
        except Exception as exc:
            if not lacks_migrations():
                log.warning("could not check for PENDING_VERSION runs", exc_info=True)
            elif not said_unmigrated:  # the start-up error said what to do; once is enough
                said_unmigrated = True
                log.warning(
                    "PENDING_VERSION runs are not checked until the database is migrated (%s)",
                    _first_line(exc),
                )


def on_worker_ready(**_: Any) -> None:
    for step in (queueing.configure_queues, _promote_known, sync_declarative):
        try:
            step()
        except Exception as exc:
            if lacks_migrations():
                # The release was deployed without migrate: the missing-migrations error
                # logged at start-up says what to do; a traceback per step hid it.
                log.error(
                    "trigger_celery worker start-up step %s failed, the database is not "
                    "migrated to this release (%s)",
                    step.__name__,
                    _first_line(exc),
                )
            else:
                log.exception("trigger_celery worker start-up step %s failed", step.__name__)
    # Runs handed back by workers of an older deploy wait for a worker that knows them.
    threading.Thread(target=_promote_forever, name="trigger-pending-version", daemon=True).start()


def on_worker_process_init(**_: Any) -> None:
    # A forked pool child must not share the parent's Redis connections.
    reset_store_cache()
    # Its main thread runs the attempts: a stop can wake it from a blocking call.
    install_wake_handler()
    import_trigger_init_modules()
    register_hooks_from_settings()


def connect() -> None:
    log_fields.install()
    signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid="tc_worker_init")
    signals.worker_ready.connect(on_worker_ready, weak=False, dispatch_uid="tc_worker_ready")
    signals.worker_process_init.connect(
        on_worker_process_init, weak=False, dispatch_uid="tc_worker_process_init"
    )
    signals.beat_init.connect(on_worker_init, weak=False, dispatch_uid="tc_beat_init")
    prefetch.connect()
