"""Run change notifications for ``runs.subscribe_to_run`` (SPEC 6).

With Redis, every change of a run (status, metadata, tags, output) is published on the
run's channel and subscribers wake at once; the row is then read for the snapshot. The
embedded default has no broker to publish on, so its subscribers re-read the row at a
short interval. A lost notification costs at most ``FALLBACK_SECONDS`` of delay.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis

from trigger_celery.conf import get_settings
from trigger_celery.coordination import keys

log = logging.getLogger("trigger_celery.engine.realtime")

FALLBACK_SECONDS = 2.0
EMBEDDED_POLL_SECONDS = 0.25
_lock = threading.Lock()
_client: Any = None
_client_url: str | None = None


def _redis() -> Any:
    global _client, _client_url
    settings = get_settings()
    if settings.store_kind != "redis" or not settings.REDIS_URL:
        return None
    with _lock:
        if _client is None or _client_url != settings.REDIS_URL:
            _client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
            _client_url = settings.REDIS_URL
        return _client


def channel(run_id: str) -> str:
    return keys.run_changed(keys.prefix(get_settings().ENVIRONMENT), run_id)


def notify(*run_ids: str) -> None:
    """Tell subscribers these runs changed. Never raises: a missed message only delays."""
    client = _redis()
    if client is None or not run_ids:
        return
    try:
        pipe = client.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.publish(channel(run_id), "1")
        pipe.execute()
    except Exception:
        log.debug("could not publish run changes", exc_info=True)


class Listener:
    """Waits for the next change of one run."""

    def __init__(self, run_id: str) -> None:
        client = _redis()
        self._pubsub = None
        if client is not None:
            self._pubsub = client.pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(channel(run_id))

    def wait(self, timeout: float | None = None) -> None:
        if self._pubsub is None:
            time.sleep(min(timeout or EMBEDDED_POLL_SECONDS, EMBEDDED_POLL_SECONDS))
            return
        deadline = time.monotonic() + (timeout or FALLBACK_SECONDS)
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if message is not None:
                # Drain what else arrived: one snapshot covers them all.
                while self._pubsub.get_message(timeout=0) is not None:
                    pass
                return

    def close(self) -> None:
        if self._pubsub is not None:
            self._pubsub.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
