"""Time-sortable ids: ``run_01jd3k...`` (48-bit ms timestamp + 80 random bits, base32)."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

from trigger_celery.core import clock

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A new id; ids made later sort after earlier ones (monotonic within a process)."""
    global _last_ms, _last_rand
    with _lock:
        ms = int(clock.timestamp() * 1000)
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
        _last_ms, _last_rand = ms, rand
    return f"{prefix}_{_encode(ms, 10)}{_encode(rand, 16)}"


def id_time(value: str) -> datetime:
    """The creation time encoded in an id made by :func:`new_id`."""
    body = value.rsplit("_", 1)[-1][:10]
    ms = 0
    for ch in body:
        ms = ms * 32 + _ALPHABET.index(ch)
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
