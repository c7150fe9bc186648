"""Idempotency key hashing (SPEC 5)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from trigger_celery.core.serialization import text_problem
from trigger_celery.errors import InvalidTriggerOptionError

MAX_KEY_LENGTH = 2048
_HASHED = re.compile(r"[0-9a-f]{64}")


def hash_key(key: str | Sequence[str], scope_parts: Sequence[str] = ()) -> str:
    """The stored form of a key: sha256 hex of its parts and scope parts.

    A 64-character lowercase hex string without scope is taken as already hashed.
    """
    parts = [key] if isinstance(key, str) else list(key) if isinstance(key, list | tuple) else []
    if not parts or any(not isinstance(p, str) or not p for p in parts):
        raise ValueError(
            f"idempotency_key must be a non-empty string or list of strings, got {key!r}"
        )
    joined = "-".join(parts)
    if len(joined) > MAX_KEY_LENGTH:
        raise ValueError(
            f"idempotency_key is {len(joined)} characters; the limit is {MAX_KEY_LENGTH}"
        )
    for part in parts:
        problem = text_problem(part)
        if problem is not None:
            raise ValueError(f"idempotency_key: {part!r} {problem}")
    if isinstance(key, str) and not scope_parts and _HASHED.fullmatch(key):
        return key
    return hashlib.sha256("-".join([*parts, *scope_parts]).encode()).hexdigest()


def refuse_lone_key_ttl(
    options: Any, extra: Mapping[str, Any] | None = None, *, keyed: bool = False
) -> None:
    """Refuse ``idempotency_key_ttl`` on a call that brings no ``idempotency_key``: it
    is how long a key holds its run, so alone it would do nothing. Only what a call
    passes is checked (``options`` and ``extra`` as it gave them): a task's own defaults,
    such as a django.tasks ``trigger_options`` ttl, wait for the calls that bring a key.
    ``keyed``: the call's key comes from elsewhere (its batch's)."""
    given = {**(options if isinstance(options, Mapping) else {}), **(extra or {})}
    ttl = given.get("idempotency_key_ttl")
    if ttl is None or keyed or given.get("idempotency_key") is not None:
        return
    raise InvalidTriggerOptionError(
        [
            (
                "idempotency_key_ttl",
                f"idempotency_key_ttl: {ttl!r} is given without an idempotency_key, so it "
                "would do nothing; give the key too, or leave the ttl out",
            )
        ]
    )
