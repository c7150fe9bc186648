"""``idempotency_keys.create``: keys scoped to the current run, attempt, or nothing (SPEC 5).

>>> key = idempotency_keys.create(f"charge-{order.id}")   # unique to this run
>>> charge.trigger(order.id, idempotency_key=key)
"""

from __future__ import annotations

from collections.abc import Sequence

from trigger_celery.core.idempotency import hash_key
from trigger_celery.engine.idempotency import SCOPES, IdempotencyKey, Scope, scope_parts


class IdempotencyKeysAPI:
    def create(self, key: str | Sequence[str], *, scope: Scope = "run") -> IdempotencyKey:
        """Hash ``key`` with its scope: inside a run, ``"run"`` (default) makes it unique to
        this run, so a retried parent does not trigger its children twice; ``"attempt"``
        to this attempt; ``"global"`` to nothing. Outside a run every scope is global."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be 'run', 'attempt' or 'global', got {scope!r}")
        return IdempotencyKey(hash_key(key, scope_parts(scope)))


idempotency_keys = IdempotencyKeysAPI()
