"""Time-sortable ids: ``run_01jd3k...`` (48-bit ms timestamp + 80 random bits, base32)."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta

from trigger_celery.core import clock

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0

# How far the time in a run's id may be from its ``created_at``: the id is made before
# the row is saved (a big batch saves its rows seconds later), and a clock stepped back
# leaves new ids at the last time seen. A date filter widens its id bounds by this much.
ID_CLOCK_SLACK = timedelta(minutes=10)


# Every pair of characters, for ten bits at a time: an id is made per run, a batch
# makes thousands at once, and a character at a time cost more than the rest of new_id.
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
# The shifts of the 13 pairs of an id's 26 characters: 48-bit ms + 80 random bits,
# held in 130 bits (the first two always zero).
_ID_SHIFTS = tuple(range(120, -1, -10))


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _encode_id(ms: int, rand: int) -> str:
    """``_encode(ms, 10) + _encode(rand, 16)``, ten bits at a time."""
    value = (ms << 80) | rand
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _ID_SHIFTS])


def _ms(moment: datetime) -> int:
    return max(int(moment.timestamp() * 1000), 0)


def new_id(prefix: str, at: datetime | None = None) -> str:
    """A new id; ids made later sort after earlier ones (monotonic within a process).

    ``at`` makes an id for that instant instead of now (fixtures, data loads), outside
    the monotonic sequence.
    """
    global _last_ms, _last_rand
    if at is not None:
        rand = int.from_bytes(os.urandom(10), "big") >> 1
        return f"{prefix}_{_encode_id(_ms(at), rand)}"
    with _lock:
        ms = int(clock.timestamp() * 1000)
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
        _last_ms, _last_rand = ms, rand
    return f"{prefix}_{_encode_id(ms, rand)}"


def id_time(value: str) -> datetime:
    """The creation time encoded in an id made by :func:`new_id`."""
    body = value.rsplit("_", 1)[-1][:10]
    ms = 0
    for ch in body:
        ms = ms * 32 + _ALPHABET.index(ch)
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def first_id_at(prefix: str, moment: datetime) -> str:
    """The smallest id :func:`new_id` can make at ``moment``: every id made at or after
    it sorts at or after this one.

    >>> first_id_at("run", datetime(2026, 1, 1, tzinfo=UTC))
    'run_01kdvdna000000000000000000'
    """
    return f"{prefix}_{_encode(_ms(moment), 10)}{'0' * 16}"


def last_id_at(prefix: str, moment: datetime) -> str:
    """The largest id :func:`new_id` can make at ``moment`` (to the millisecond)."""
    return f"{prefix}_{_encode(_ms(moment), 10)}{_ALPHABET[-1] * 16}"
