"""The process-wide store, built from settings."""

from __future__ import annotations

import threading

from trigger_celery.conf import get_settings
from trigger_celery.coordination.base import CoordinationStore
from trigger_celery.coordination.database import DatabaseStore
from trigger_celery.coordination.redis import RedisStore
from trigger_celery.errors import ConfigurationError

_lock = threading.Lock()
_store: CoordinationStore | None = None
_built_for: tuple[str, str | None, str] | None = None


def get_store() -> CoordinationStore:
    """The store for the current settings (rebuilt if the settings changed)."""
    global _store, _built_for
    settings = get_settings()
    wanted = (settings.store_kind, settings.REDIS_URL, settings.ENVIRONMENT)
    with _lock:
        if _store is None or _built_for != wanted:
            if settings.store_kind == "redis":
                assert settings.REDIS_URL
                try:
                    _store = RedisStore(settings.REDIS_URL, namespace=settings.ENVIRONMENT)
                except ValueError as exc:  # redis-py's word on a malformed URL
                    raise ConfigurationError(
                        f"TRIGGER_CELERY['REDIS_URL'] is {settings.REDIS_URL!r}: {exc}"
                    ) from None
            else:
                _store = DatabaseStore()
            _built_for = wanted
        return _store


def reset_store_cache() -> None:
    global _store, _built_for
    with _lock:
        _store = None
        _built_for = None
