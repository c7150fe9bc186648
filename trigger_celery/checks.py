"""Django system checks: misconfiguration is reported by ``manage.py check``."""

from __future__ import annotations

import math
import os
from typing import Any

from django.conf import settings as django_settings
from django.core import checks
from django.core.files.storage import FileSystemStorage, InvalidStorageError, storages
from django.utils.module_loading import import_string

from trigger_celery.beat import Scheduler
from trigger_celery.celery_checks import check_celery, redis_url_problem
from trigger_celery.conf import ENVIRONMENTS, get_settings, unknown_keys
from trigger_celery.core.durations import MAX_SECONDS
from trigger_celery.core.environments import burst_factor_problem, concurrency_limit_problem
from trigger_celery.core.queue_names import control_character_problem
from trigger_celery.core.retry import RetryPolicy
from trigger_celery.engine.payloads import storage_anchor
from trigger_celery.engine.registry import registry
from trigger_celery.errors import TaskModuleImportError
from trigger_celery.worker.settings_hooks import SHAPE, named_hooks


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    problems: list[checks.CheckMessage] = []
    raw = getattr(django_settings, "TRIGGER_CELERY", None)
    if raw is not None and not isinstance(raw, dict):
        return [
            checks.Error(f"TRIGGER_CELERY must be a dict, got {raw!r}", id="trigger_celery.E001")
        ]
    for key in unknown_keys():
        problems.append(
            checks.Error(
                f"TRIGGER_CELERY has an unknown key {key!r}",
                hint="See trigger_celery.conf.Settings for the accepted keys.",
                id="trigger_celery.E002",
            )
        )
    s = get_settings()
    if s.ENVIRONMENT not in ENVIRONMENTS:
        problems.append(
            checks.Error(
                f"TRIGGER_CELERY['ENVIRONMENT'] is {s.ENVIRONMENT!r}",
                hint=f"Use one of {', '.join(ENVIRONMENTS)}.",
                id="trigger_celery.E003",
            )
        )
    limit_problem = concurrency_limit_problem(s.CONCURRENCY_LIMIT)
    if limit_problem is not None:
        problems.append(checks.Error(limit_problem, id="trigger_celery.E004"))
    burst_problem = burst_factor_problem(s.BURST_FACTOR)
    if burst_problem is not None:
        problems.append(checks.Error(burst_problem, id="trigger_celery.E005"))
    if s.STORE not in (None, "redis", "database"):
        problems.append(
            checks.Error(
                f"TRIGGER_CELERY['STORE'] is {s.STORE!r}; use 'redis' or 'database'",
                id="trigger_celery.E006",
            )
        )
    if s.store_kind == "redis" and not s.REDIS_URL:
        problems.append(
            checks.Error(
                "TRIGGER_CELERY['STORE'] is 'redis' but REDIS_URL is not set",
                id="trigger_celery.E007",
            )
        )
    problems += _check_values(s)
    timing_ok = all(_positive(getattr(s, k), float) for k in ("LEASE_SECONDS", "HEARTBEAT_SECONDS"))
    if timing_ok and s.LEASE_SECONDS <= s.HEARTBEAT_SECONDS * 2:
        problems.append(
            checks.Warning(
                f"LEASE_SECONDS ({s.LEASE_SECONDS}) should be well above twice HEARTBEAT_SECONDS "
                f"({s.HEARTBEAT_SECONDS}), or live runs may be taken for crashed",
                id="trigger_celery.W001",
            )
        )
    try:
        RetryPolicy.from_value(s.RETRY)
    except ValueError as exc:
        problems.append(
            checks.Error(f"TRIGGER_CELERY['RETRY'] is invalid: {exc}", id="trigger_celery.E008")
        )
    problems.extend(_check_hook_paths(s.HOOKS, s.MIDDLEWARE))
    problems += check_celery()
    if not getattr(django_settings, "CELERY_DB_REUSE_MAX", None):
        problems.append(
            checks.Warning(
                "CELERY_DB_REUSE_MAX is not set: Celery closes the database connection after "
                "every task, and each run then pays for a new connection",
                hint="Set CELERY_DB_REUSE_MAX = 1000 in settings.",
                id="trigger_celery.W002",
            )
        )
    scheduler = getattr(django_settings, "CELERY_BEAT_SCHEDULER", None)
    if scheduler != "trigger_celery.beat:Scheduler" and not _is_our_scheduler(scheduler):
        problems.append(
            checks.Warning(
                f"CELERY_BEAT_SCHEDULER is {scheduler!r}: celery beat will not fire "
                "trigger_celery schedules, due retries and delays, or recover crashed runs",
                hint="Set CELERY_BEAT_SCHEDULER = 'trigger_celery.beat:Scheduler' "
                "(it also runs django-celery-beat's periodic tasks).",
                id="trigger_celery.W003",
            )
        )
    problems += _check_storage(s.STORAGE)
    problems += _check_sqlite()
    problems += _check_isolation()
    return problems


# Numeric settings: the kind of number and its least value. None is also accepted where
# the setting means "none" (no ttl by default in DEVELOPMENT). 0 is meaningful for the
# inline limit (every payload to storage) and the log lines (none stored).
_NUMBERS: dict[str, tuple[type, str]] = {
    "LEASE_SECONDS": (float, "above 0"),
    "HEARTBEAT_SECONDS": (float, "above 0"),
    "PUMP_INTERVAL": (float, "above 0"),
    "PAYLOAD_INLINE_LIMIT": (int, "0 or more"),
    "PAYLOAD_MAX_SIZE": (int, "above 0"),
    "OUTPUT_MAX_SIZE": (int, "above 0"),
    "LOG_LINES_PER_RUN": (int, "0 or more"),
    "DEVELOPMENT_TTL": (int, "above 0"),
}
_NONE_ALLOWED = frozenset({"DEVELOPMENT_TTL"})
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


# Settings that are spans of time: at most 10 years, as every duration option (a longer
# one overflows the dates made from it, at trigger time or in a worker).
_DURATIONS = frozenset({"LEASE_SECONDS", "HEARTBEAT_SECONDS", "PUMP_INTERVAL", "DEVELOPMENT_TTL"})


def _positive(value: Any, kind: type, least: str = "above 0", most: float = math.inf) -> bool:
    number = int | float if kind is float else int
    if isinstance(value, bool) or not isinstance(value, number) or not math.isfinite(value):
        return False  # NaN compares false with every bound, and inf never ends
    if value > most:
        return False
    return value >= 0 if least == "0 or more" else value > 0


def _check_values(s: Any) -> list[checks.CheckMessage]:
    """The scalar settings: each wrong value is an error that names it."""
    problems = [
        checks.Error(
            f"TRIGGER_CELERY[{name!r}] is {getattr(s, name)!r}; it must be "
            f"{'a whole number' if kind is int else 'a number'} {least}"
            + (f" and at most {MAX_SECONDS} (10 years)" if name in _DURATIONS else "")
            + (" or None" if name in _NONE_ALLOWED else ""),
            id="trigger_celery.E014",
        )
        for name, (kind, least) in _NUMBERS.items()
        if not (getattr(s, name) is None and name in _NONE_ALLOWED)
        and not _positive(
            getattr(s, name), kind, least, MAX_SECONDS if name in _DURATIONS else math.inf
        )
    ]
    for name in ("CELERY_QUEUE", "STORAGE_PREFIX"):
        value = getattr(s, name)
        if name == "CELERY_QUEUE" and value is None:
            continue  # the Celery app's routing decides
        if not isinstance(value, str) or not value.strip():
            problem = "it must be a non-empty string"
        elif value != value.strip() or control_character_problem(value):
            # Celery would declare and consume a queue of exactly this name: a stray
            # space or newline makes one no worker started with ``-Q default`` reads.
            problem = "it must have no spaces at its ends and no control characters"
        else:
            continue
        problems.append(
            checks.Error(
                f"TRIGGER_CELERY[{name!r}] is {value!r}; {problem}", id="trigger_celery.E014"
            )
        )
    if s.REDIS_URL is not None and not (
        isinstance(s.REDIS_URL, str) and s.REDIS_URL.startswith(REDIS_SCHEMES)
    ):
        problems.append(
            checks.Error(
                f"TRIGGER_CELERY['REDIS_URL'] is {s.REDIS_URL!r}; it must start with "
                f"{', '.join(REDIS_SCHEMES)} (or leave it out for the embedded store)",
                id="trigger_celery.E015",
            )
        )
    elif s.REDIS_URL is not None and (problem := redis_url_problem(s.REDIS_URL)) is not None:
        problems.append(
            checks.Error(
                f"TRIGGER_CELERY['REDIS_URL'] is {s.REDIS_URL!r}{problem[0]}",
                hint=problem[1],
                id="trigger_celery.E015",
            )
        )
    prefix = s.STORAGE_PREFIX
    if isinstance(prefix, str) and (prefix.startswith(("/", "\\")) or ".." in prefix.split("/")):
        problems.append(
            checks.Error(
                f"TRIGGER_CELERY['STORAGE_PREFIX'] is {prefix!r}; it must be a relative path "
                "inside the storage, without '..'",
                id="trigger_celery.E018",
            )
        )
    if s.STORE == "database" and s.REDIS_URL:
        problems.append(
            checks.Warning(
                f"TRIGGER_CELERY['STORE'] is 'database', so REDIS_URL ({s.REDIS_URL!r}) is not "
                "used: limits, queues and leases live in the database",
                hint="Remove REDIS_URL, or STORE to use Redis.",
                id="trigger_celery.W007",
            )
        )
    inline, most = s.PAYLOAD_INLINE_LIMIT, s.PAYLOAD_MAX_SIZE
    if _positive(inline, int, "0 or more") and _positive(most, int) and inline > most:
        problems.append(
            checks.Warning(
                f"TRIGGER_CELERY['PAYLOAD_INLINE_LIMIT'] ({inline}) is above PAYLOAD_MAX_SIZE "
                f"({most}): every payload is refused before it could be too large to inline",
                id="trigger_celery.W008",
            )
        )
    if not getattr(django_settings, "USE_TZ", True):
        problems.append(
            checks.Error(
                "USE_TZ is False: trigger_celery records every time as an aware datetime "
                "(schedules across DST, delays, ttls), which needs USE_TZ = True",
                hint="Set USE_TZ = True, as startproject does.",
                id="trigger_celery.E016",
            )
        )
    return problems


SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL;",
}


def _check_sqlite() -> list[checks.CheckMessage]:
    """SQLite as Django ships it fails concurrent read-then-write transactions."""
    problems: list[checks.CheckMessage] = []
    for alias, config in django_settings.DATABASES.items():
        if "sqlite3" not in str(config.get("ENGINE", "")):
            continue
        options = config.get("OPTIONS") or {}
        if str(options.get("transaction_mode", "")).upper() in ("IMMEDIATE", "EXCLUSIVE"):
            continue
        problems.append(
            checks.Warning(
                f"DATABASES[{alias!r}] is SQLite with DEFERRED transactions: when workers, "
                "beat and the web process write at once, your own read-then-write "
                "transactions fail with 'database is locked' (trigger_celery's own take "
                "the write lock first)",
                hint=f"Set DATABASES[{alias!r}]['OPTIONS'] = {SQLITE_OPTIONS!r}.",
                id="trigger_celery.W004",
            )
        )
    return problems


def _check_isolation() -> list[checks.CheckMessage]:
    """A trigger looks for its key's holder after taking the key's lock: only at READ
    COMMITTED (PostgreSQL's default) does that look see a holder committed meanwhile."""
    problems: list[checks.CheckMessage] = []
    for alias, config in django_settings.DATABASES.items():
        if "postgresql" not in str(config.get("ENGINE", "")):
            continue
        level = (config.get("OPTIONS") or {}).get("isolation_level")
        name = _isolation_name(level) if level is not None else "READ_COMMITTED"
        if name in ("REPEATABLE_READ", "SERIALIZABLE"):
            problems.append(
                checks.Warning(
                    f"DATABASES[{alias!r}] runs transactions at {name}: a trigger that waited "
                    "for another with the same idempotency or debounce key does not see the "
                    "run that one just made, and both make one",
                    hint=f"Leave DATABASES[{alias!r}]['OPTIONS']['isolation_level'] unset "
                    "(READ COMMITTED), or set it only for the connections that need it.",
                    id="trigger_celery.W014",
                )
            )
    return problems


def _isolation_name(level: Any) -> str:
    name = getattr(level, "name", None)  # psycopg's IsolationLevel
    if isinstance(name, str):
        return name
    try:
        import psycopg

        return psycopg.IsolationLevel(int(level)).name
    except Exception:  # another driver's constant: not one we can name
        return str(level)


def _check_storage(alias: Any) -> list[checks.CheckMessage]:
    try:
        storage = storages[alias]
    except (InvalidStorageError, TypeError):
        return [
            checks.Error(
                f"TRIGGER_CELERY['STORAGE'] is {alias!r}, which is not an alias of STORAGES",
                hint=f"Use one of {', '.join(sorted(storages.backends))}.",
                id="trigger_celery.E012",
            )
        ]
    base = getattr(storage, "base_location", None)
    relative = isinstance(storage, FileSystemStorage) and not os.path.isabs(str(base or ""))
    if relative and storage_anchor() is None:  # else it is anchored at BASE_DIR
        return [
            checks.Error(
                f"large payloads and outputs go to the {alias!r} storage, whose location "
                f"{base!r} is relative, and there is no absolute BASE_DIR to anchor it at: "
                "each process would write under its own working directory, so large "
                "payloads are refused",
                hint="Set MEDIA_ROOT (or the storage's OPTIONS['location']) to an absolute "
                "path, or name another STORAGES alias in TRIGGER_CELERY['STORAGE'].",
                id="trigger_celery.E017",
            )
        ]
    return []


@checks.register(deploy=True)
def check_deploy(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``manage.py check --deploy``: the development defaults in a deployment."""
    s = get_settings()
    if s.ENVIRONMENT != "DEVELOPMENT" or s.DEVELOPMENT_TTL is None:
        return []
    return [
        checks.Warning(
            "TRIGGER_CELERY['ENVIRONMENT'] is 'DEVELOPMENT' (the default): a run triggered "
            f"without a ttl expires after {s.DEVELOPMENT_TTL} s in its queue (DEVELOPMENT_TTL)",
            hint="Set TRIGGER_CELERY['ENVIRONMENT'] = 'PRODUCTION' (or 'STAGING') in "
            "the deployed settings.",
            id="trigger_celery.W009",
        )
    ]


@checks.register()
def check_tasks_modules(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every installed app's ``tasks`` module imports (a broken one is named). Its
    ``trigger_init`` modules are left to the workers, which refuse to start naming a
    broken one: they set up workers, and importing them here would run that set-up in
    every process that runs the checks (``migrate``, ``runserver``)."""
    try:
        registry.ensure_discovered()
    except TaskModuleImportError as exc:
        return [checks.Error(str(exc), id="trigger_celery.E013")]
    return queue_limit_warnings()


def queue_limit_warnings() -> list[checks.CheckMessage]:
    """W016 for each queue registered in this process whose per-key limit is above its
    total (a worker reports these at start too: Celery runs no system checks)."""
    return [
        checks.Warning(
            f"queue {q.name!r}: its per-key limit {q.concurrency_limit} is above its "
            f"total_limit {q.total_limit}, so no concurrency key can reach it; each key "
            f"runs at most {q.total_limit}",
            hint=f"Give it a per-key limit of {q.total_limit} or less, or raise total_limit.",
            id="trigger_celery.W016",
        )
        for q in sorted(registry.queues.values(), key=lambda q: q.name)
        if q.concurrency_limit and q.total_limit and q.concurrency_limit > q.total_limit
    ]


def _is_our_scheduler(path: Any) -> bool:
    """True when ``path`` names a subclass of our scheduler (``module:Class`` or dotted)."""
    if not isinstance(path, str) or not path:
        return False
    try:
        cls = import_string(path.replace(":", "."))
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, Scheduler)


def _check_hook_paths(hooks: Any, middleware: Any) -> list[checks.CheckMessage]:
    _, problems = named_hooks(hooks, middleware)
    return [
        checks.Error(
            f"TRIGGER_CELERY {text}",
            id="trigger_celery.E010" if kind == SHAPE else "trigger_celery.E011",
        )
        for kind, text in problems
    ]
