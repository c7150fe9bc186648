"""Typed, lazy settings read from ``settings.TRIGGER_CELERY``.

Values are read on every access, so ``override_settings`` works in tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from trigger_celery.core.environments import ENVIRONMENTS

__all__ = ["ENVIRONMENTS", "Settings", "get_settings", "unknown_keys"]


@dataclass(frozen=True)
class Settings:
    # Coordination store. "redis://..." for Redis; "database" for the embedded store.
    REDIS_URL: str | None = None
    STORE: str | None = None  # "redis" | "database"; derived from REDIS_URL when None
    ENVIRONMENT: str = "DEVELOPMENT"
    CONCURRENCY_LIMIT: int = 100
    # All queues together may run CONCURRENCY_LIMIT x BURST_FACTOR; one queue never more
    # than CONCURRENCY_LIMIT (SPEC 4). 2.0, as Trigger.dev's environments burst.
    BURST_FACTOR: float = 2.0
    # Default retry policy of tasks without their own (SPEC 2).
    RETRY: dict[str, Any] = field(
        default_factory=lambda: {
            "max_attempts": 3,
            "factor": 2,
            "min_timeout_in_ms": 1000,
            "max_timeout_in_ms": 60_000,
            "randomize": True,
        }
    )
    # Seconds a claimed run keeps its slot without a heartbeat.
    LEASE_SECONDS: float = 30.0
    HEARTBEAT_SECONDS: float = 5.0
    # Longest pause of the scheduler loop; it wakes earlier when a run is due sooner.
    PUMP_INTERVAL: float = 0.5
    # Default ttl (seconds) of runs in the DEVELOPMENT environment (SPEC 5).
    DEVELOPMENT_TTL: int | None = 600
    # Celery queue that runs without machine/region go to. None: where the Celery app
    # routes ``trigger_celery.execute_run`` (its task_routes, else task_default_queue:
    # what a worker started without -Q consumes).
    CELERY_QUEUE: str | None = None
    PAYLOAD_INLINE_LIMIT: int = 512 * 1024
    PAYLOAD_MAX_SIZE: int = 10 * 1024 * 1024
    OUTPUT_MAX_SIZE: int = 100 * 1024 * 1024
    LOG_LINES_PER_RUN: int = 1000
    # The STORAGES alias large payloads and outputs are written to, and the path prefix.
    STORAGE: str = "default"
    STORAGE_PREFIX: str = "trigger-celery-payloads"
    # Dotted paths of global hook functions, by hook name (SPEC 3).
    HOOKS: dict[str, list[str]] = field(default_factory=dict)
    MIDDLEWARE: list[str] = field(default_factory=list)
    # Prometheus metrics: None is off; a dict turns the counters on and says who may
    # read /metrics: {"TOKEN": "...", "ALLOWED_IPS": ["10.0.0.0/8"]}.
    METRICS: dict[str, Any] | None = None

    @property
    def store_kind(self) -> str:
        if self.STORE:
            return self.STORE
        return "redis" if self.REDIS_URL else "database"


KNOWN_KEYS = frozenset(f.name for f in fields(Settings))


# The last settings built, with a copy of the dict they were built from: hot paths call
# get_settings() several times per run, and building the dataclass cost more than
# comparing the dict (changed in place or replaced, it is built again).
_built: tuple[dict[str, Any], Settings] | None = None


def get_settings() -> Settings:
    """The settings object of Django's ``TRIGGER_CELERY`` now (cheap; call freely)."""
    global _built
    raw = _raw()
    built = _built
    if built is not None and built[0] == raw:
        return built[1]
    result = Settings(**{k: v for k, v in raw.items() if k in KNOWN_KEYS})
    _built = (dict(raw), result)
    return result


def unknown_keys() -> list[str]:
    return sorted(k for k in _raw() if k not in KNOWN_KEYS)


def _raw() -> Mapping[str, Any]:
    raw = getattr(django_settings, "TRIGGER_CELERY", None) or {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            f"settings.TRIGGER_CELERY must be a dict of trigger_celery settings, got {raw!r}"
        )
    return raw
