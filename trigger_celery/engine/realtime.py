"""Run change notifications for ``runs.subscribe_to_run`` (SPEC 6).

With Redis, every change of a run (status, metadata, tags, output) is published on the
run's channel and subscribers wake at once; the row is then read for the snapshot.
Publishing costs a round trip per change, so a process publishes only while someone
listens: every subscriber also joins one ``listening`` channel per environment, whose
subscriber count each process checks at most once per ``LISTENING_CHECK_SECONDS``. A
subscriber that arrives in between may miss changes for that long; its periodic re-read
(``FALLBACK_SECONDS``) covers them. The
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
LISTENING_CHECK_SECONDS = 1.0
EMBEDDED_POLL_SECONDS = 0.25
_lock = threading.Lock()
_client: Any = None
_client_url: str | None = None
# (when it was checked, whether anyone listened then)
_listening: tuple[float, bool] = (float("-inf"), False)


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


def listening_channel() -> str:
    return keys.listening(keys.prefix(get_settings().ENVIRONMENT))


def someone_listens(client: Any) -> bool:
    """Whether any subscriber of run changes exists (cached for a second)."""
    global _listening
    checked_at, answer = _listening
    now = time.monotonic()
    if now - checked_at < LISTENING_CHECK_SECONDS:
        return answer
    counts = client.pubsub_numsub(listening_channel())
    answer = bool(counts and int(counts[0][1]))
    _listening = (now, answer)
    return answer


def forget_listeners() -> None:
    """Check again on the next change (tests; a forked process)."""
    global _listening
    _listening = (float("-inf"), False)


def notify(*run_ids: str) -> None:
    """Tell subscribers these runs changed. Never raises: a missed message only delays."""
    client = _redis()
    if client is None or not run_ids:
        return
    try:
        if not someone_listens(client):
            return
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
            self._pubsub.subscribe(channel(run_id), listening_channel())
            forget_listeners()  # this process publishes from now on

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
