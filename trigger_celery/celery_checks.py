"""System checks of the Celery configuration a project already has.

Celery settings may live in Django's settings (``CELERY_*``, read by
``config_from_object(..., namespace="CELERY")``) or in the project's ``celery.py``
(``app.conf...``): each is read from Django's settings when set there, else from the
project's Celery app as it is configured.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

from celery import _state as celery_state
from celery import current_app
from django.conf import settings as django_settings
from django.core import checks
from kombu import Connection

from trigger_celery.conf import get_settings

JSON = ("json", "application/json")


def celery_setting(name: str) -> Any:
    """The Celery setting ``name`` (``worker_prefetch_multiplier``): ``CELERY_<NAME>`` in
    Django's settings when set, else the current Celery app's value."""
    django_name = f"CELERY_{name.upper()}"
    if hasattr(django_settings, django_name):
        return getattr(django_settings, django_name)
    return current_app.conf.get(name)


def broker_url() -> str | None:
    """The broker Celery connects to: ``CELERY_BROKER_URL`` in the environment comes
    first (Celery reads it ahead of every setting), then the settings' and the app's."""
    return os.environ.get("CELERY_BROKER_URL") or celery_setting("broker_url")


def check_celery() -> list[checks.CheckMessage]:
    return (
        _check_app_loaded()
        + _check_broker()
        + _check_serializers()
        + _check_prefetch()
        + _check_eager()
        + _check_time_limit()
    )


def _check_app_loaded() -> list[checks.CheckMessage]:
    """A process that never imported the project's Celery app (``proj/__init__.py``
    without ``from .celery import app``) sends runs with Celery's fallback app: its
    broker is RabbitMQ on localhost whatever CELERY_BROKER_URL says, and the runs wait
    there for a worker that never comes (until their lease runs out and beat sends them
    again)."""
    # Any app but Celery's fallback (named "default") will do: ``current_app`` is per
    # thread, and runserver runs the checks in a thread of its own, where it is the
    # fallback even when the project's app is loaded.
    if any(app.main != "default" for app in celery_state._get_active_apps()):
        return []
    app = current_app._get_current_object()
    configured = any(name.startswith("CELERY_") for name in dir(django_settings))
    try:
        if not configured and get_settings().store_kind == "database":
            return []  # the embedded default with no Celery settings: its own broker
    except Exception:  # unreadable settings: the settings checks name them
        return []
    package = str(os.environ.get("DJANGO_SETTINGS_MODULE") or "proj.settings").split(".")[0]
    return [
        checks.Warning(
            f"no Celery app is loaded in this process: runs are sent with Celery's fallback "
            f"app, to {app.conf.broker_url or 'amqp://guest@localhost//'!r}, not with the "
            "app your CELERY_ settings configure",
            hint=f"Load your Celery app when Django starts: in {package}/__init__.py, "
            "'from .celery import app as celery_app'.",
            id="trigger_celery.W015",
        )
    ]


def _check_broker() -> list[checks.CheckMessage]:
    """A project that chose a store (Redis) but no broker gets Celery's own default,
    RabbitMQ on localhost, without a word; the embedded default sets its own broker."""
    if url := broker_url():
        return _broker_url_problems(url)
    try:
        if get_settings().store_kind == "database":
            return []  # the embedded default: its file-system broker (default_broker.py)
    except Exception:  # unreadable settings: the settings checks name them
        return []
    return [
        checks.Warning(
            "CELERY_BROKER_URL is not set: Celery falls back to its default broker, "
            "amqp://guest@localhost//, and runs go wherever that is (or nowhere)",
            hint="Set CELERY_BROKER_URL, e.g. to your Redis in another database than the "
            "store's: 'redis://localhost:6379/1'.",
            id="trigger_celery.W013",
        )
    ]


def redis_url_problem(url: str) -> tuple[str, str] | None:
    """What is wrong with a Redis URL past its scheme, and a hint (None if fine): a
    database that is not a number, or a bad port (every process would fail to connect,
    and a trigger's run would wait for a reconciler that cannot connect either)."""
    parts = urlsplit(url)
    db = parse_qs(parts.query).get("db", [""])[0]
    if not db and parts.scheme != "unix":
        db = parts.path.strip("/")
    if db != "" and not db.isdigit():
        return (
            f", whose database {db!r} is not a number: Redis would use database 0, which "
            "may hold another's data",
            "End the URL with the database number, e.g. redis://localhost:6379/1.",
        )
    try:
        port = parts.port
    except ValueError as exc:  # "Port could not be cast ...", "Port out of range ..."
        port, said = 0, str(exc)
    else:
        said = "port 0 is not a port"
    if port == 0:
        return f": {said}", "A port is a number from 1 to 65535, e.g. redis://localhost:6379/1."
    return None


def _broker_url_problems(url: Any) -> list[checks.CheckMessage]:
    """A broker URL no worker could use: an unknown transport, or a Redis URL with a bad
    port or database. A trigger still returned its handle, and its run was sent again at
    each lease's end, never to arrive."""
    urls = url.split(";") if isinstance(url, str) else url  # Celery's failover list
    problems = []
    for one in urls if isinstance(urls, list | tuple) else [urls]:
        try:
            Connection(one).get_transport_cls()
        except Exception as exc:  # KeyError("No such transport: foo"), ImportError...
            said, hint = f": {exc}", "Use a transport kombu has, e.g. redis://localhost:6379/1."
        else:
            text = str(one)
            redis = text.startswith(("redis://", "rediss://", "unix://"))
            found = redis_url_problem(text) if redis else None
            if found is None:
                continue
            said, hint = found
        problems.append(
            checks.Error(f"CELERY_BROKER_URL is {one!r}{said}", hint=hint, id="trigger_celery.E019")
        )
    return problems


def _check_serializers() -> list[checks.CheckMessage]:
    """Runs are sent as JSON whatever the project's serializer; a worker must accept it."""
    accept = celery_setting("accept_content")
    if accept is None:
        accept = ["json"]  # Celery's default
    if not isinstance(accept, list | tuple | set | frozenset):  # "json": j, s, o, n
        return [
            checks.Error(
                f"CELERY_ACCEPT_CONTENT is {accept!r}: it must be a list of content types",
                hint="CELERY_ACCEPT_CONTENT = ['json']",
                id="trigger_celery.E009",
            )
        ]
    accept = list(accept)
    if not any(kind in JSON for kind in accept):
        return [
            checks.Error(
                f"CELERY_ACCEPT_CONTENT is {accept!r}: workers would refuse trigger_celery's "
                "messages, which are JSON",
                hint="Add 'json' to CELERY_ACCEPT_CONTENT.",
                id="trigger_celery.E009",
            )
        ]
    if "pickle" in accept or "application/x-python-serialize" in accept:
        return [
            checks.Warning(
                f"CELERY_ACCEPT_CONTENT is {accept!r}: trigger_celery sends its runs as JSON, "
                "but a worker that accepts pickle runs the code of any message someone can "
                "put in the broker",
                hint="Accept only JSON (CELERY_ACCEPT_CONTENT = ['json']) once your own "
                "tasks do not need pickle.",
                id="trigger_celery.W010",
            )
        ]
    return []


def _check_prefetch() -> list[checks.CheckMessage]:
    """A run reserved by a busy worker waits there instead of starting on a free one."""
    multiplier = celery_setting("worker_prefetch_multiplier")
    # Unset (None) on a Redis broker, the worker turns it on itself (worker.prefetch).
    disable = getattr(django_settings, "CELERY_WORKER_DISABLE_PREFETCH", None)
    if disable is None and current_app.conf.get("worker_disable_prefetch"):
        disable = True
    broker = str(broker_url() or "")
    redis_broker = broker.startswith(("redis:", "rediss:", "redis+socket:", "sentinel:"))
    if multiplier == 1 or disable or (disable is None and redis_broker):
        return []
    return [
        checks.Warning(
            f"worker_prefetch_multiplier is {multiplier!r}: a busy worker reserves runs it "
            "cannot start yet; each is handed back after a second and sent again, so runs "
            "go back and forth between busy workers",
            hint="Set CELERY_WORKER_PREFETCH_MULTIPLIER = 1 (or "
            "app.conf.worker_prefetch_multiplier = 1, or start workers with "
            "--prefetch-multiplier 1).",
            id="trigger_celery.W006",
        )
    ]


def _check_eager() -> list[checks.CheckMessage]:
    if not celery_setting("task_always_eager"):
        return []
    return [
        checks.Warning(
            "task_always_eager is on: trigger_celery does not run runs eagerly. trigger() "
            "still records each run and sends it to the broker, where a worker runs it "
            "(in tests too)",
            hint="Start a worker for the runs; CELERY_TASK_ALWAYS_EAGER only changes the "
            "project's own .delay() calls.",
            id="trigger_celery.W011",
        )
    ]


def _check_time_limit() -> list[checks.CheckMessage]:
    """Celery's hard time limit kills the pool process without a word to the run."""
    limit = celery_setting("task_time_limit")
    if not limit:
        return []
    return [
        checks.Warning(
            f"task_time_limit is {limit!r}: it applies to runs too. A run past it is killed "
            "with its process and counted as a crash once its lease ends (LEASE_SECONDS "
            "later), then retried",
            hint="Give tasks max_duration= instead (the run ends TIMED_OUT at once), or "
            "keep task_time_limit well above every task's max_duration: an attempt's "
            "short waits (wait.for_ of 2 s or less, spent in place) do not count toward "
            "max_duration but do toward Celery's limit.",
            id="trigger_celery.W012",
        )
    ]
