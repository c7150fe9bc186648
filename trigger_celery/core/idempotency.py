"""Idempotency key hashing (SPEC 5)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from trigger_celery.core.serialization import text_problem

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
