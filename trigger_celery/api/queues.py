"""``queues``: pause, resume and live counts of the queues declared in code (SPEC 4).

Pausing is durable: the flag is a row (``QueueState``) mirrored into the coordination
store, so it survives a Redis flush (the reconciler re-applies it).
"""

from __future__ import annotations

from dataclasses import dataclass

from trigger_celery.coordination.factory import get_store
from trigger_celery.engine import dispatch
from trigger_celery.engine.registry import registry
from trigger_celery.models import QueueState


@dataclass(frozen=True)
class QueueInfo:
    """A queue and its live counts, summed over its concurrency keys."""

    name: str
    concurrency_limit: int | None
    total_limit: int | None
    rate_limit: str | None
    paused: bool
    queued: int
    executing: int
    keys: dict[str, tuple[int, int]]  # concurrency key -> (queued, executing)


class QueuesAPI:
    def pause(self, name: str) -> None:
        """A paused queue starts nothing; runs already executing finish."""
        self._set(name, True)

    def resume(self, name: str) -> None:
        self._set(name, False)
        dispatch.dispatch_ready(name)

    def _set(self, name: str, paused: bool) -> None:
        registry.require_queue(name)
        QueueState.objects.update_or_create(name=name, defaults={"paused": paused})
        get_store().set_paused(name, paused)

    def retrieve(self, name: str) -> QueueInfo:
        q = registry.require_queue(name)
        rows = get_store().stats(name)
        keys = {r.concurrency_key or "": (r.queued, r.executing) for r in rows}
        return QueueInfo(
            name=q.name,
            concurrency_limit=q.concurrency_limit,
            total_limit=q.total_limit,
            rate_limit=q.rate_limit,
            paused=QueueState.objects.filter(name=name, paused=True).exists(),
            queued=sum(r.queued for r in rows),
            executing=sum(r.executing for r in rows),
            keys=keys,
        )

    def list(self) -> list[QueueInfo]:
        registry.ensure_discovered()
        return [self.retrieve(name) for name in sorted(registry.queues)]


queues = QueuesAPI()
