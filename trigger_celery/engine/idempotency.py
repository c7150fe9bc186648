"""Idempotency keys (SPEC 5): scoping, hashing and the trigger-time lookup."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from trigger_celery.core.context import optional_scope
from trigger_celery.core.idempotency import hash_key
from trigger_celery.core.statuses import IDEMPOTENCY_HOLDING_STATUSES
from trigger_celery.models import JoinedKey, Run

DEFAULT_TTL = timedelta(days=30)
Scope = Literal["run", "attempt", "global"]
SCOPES = ("run", "attempt", "global")


class IdempotencyKey(str):
    """A key already hashed with its scope; passed to ``trigger`` as is."""

    __slots__ = ()


def scope_parts(scope: Scope) -> list[str]:
    current = optional_scope()
    if current is None or scope == "global":
        return []
    if scope == "attempt":
        return [current.ctx.run.id, str(current.ctx.attempt.number)]
    return [current.ctx.run.id]


def resolve_key(value: str | Sequence[str]) -> str:
    """The stored key for a trigger's ``idempotency_key`` option."""
    # A key from create() is already hashed with its scope.
    if isinstance(value, IdempotencyKey):
        return str(value)
    # A plain key given inside a run is scoped to that run, as with create(), a sha256
    # digest of the user's too; outside a run a 64-hex key is taken as already hashed.
    return hash_key(value, scope_parts("run"))


def find_cached(environment: str, task_id: str, key: str, now: datetime) -> Run | None:
    """The run holding ``key``, or None (an expired key is released on the way)."""
    run = Run.objects.filter(
        environment=environment, task_identifier=task_id, idempotency_key=key
    ).first()
    if run is None:
        return _find_joined(environment, task_id, key, now)
    if run.idempotency_key_expires_at is not None and run.idempotency_key_expires_at <= now:
        Run.objects.filter(id=run.id, idempotency_key=key).update(idempotency_key=None)
        return None
    if run.status not in IDEMPOTENCY_HOLDING_STATUSES:
        Run.objects.filter(id=run.id, idempotency_key=key).update(idempotency_key=None)
        return None
    return run


def _find_joined(environment: str, task_id: str, key: str, now: datetime) -> Run | None:
    """The debounced run ``key`` joined (``JoinedKey``), while the key counts."""
    joined = (
        JoinedKey.objects.filter(environment=environment, task_identifier=task_id, key=key)
        .select_related("run")
        .first()
    )
    if joined is None:
        return None
    if joined.expires_at > now and joined.run.status in IDEMPOTENCY_HOLDING_STATUSES:
        return joined.run
    JoinedKey.objects.filter(id=joined.id).delete()  # released, as a run's own key is
    return None


def record_joined(run: Run, pending: Run) -> None:
    """``run`` (not saved) joined ``pending``: the key ``run`` took now finds ``pending``."""
    key = run.idempotency_key
    if key is None or key == pending.idempotency_key:
        return
    assert run.idempotency_key_expires_at is not None
    JoinedKey.objects.bulk_create(
        [
            JoinedKey(
                environment=run.environment,
                task_identifier=run.task_identifier,
                key=key,
                run_id=pending.id,
                expires_at=run.idempotency_key_expires_at,
            )
        ],
        ignore_conflicts=True,  # a concurrent trigger with this key recorded it first
    )
