"""``queues``: pause, resume and live counts of the queues declared in code (SPEC 4).

Pausing is durable: the flag is a row (``QueueState``) mirrored into the coordination
store, so it survives a Redis flush (the reconciler re-applies it). A queue a deploy
removed from the code while it was paused, or held runs, is still listed, and can be
paused and resumed (its runs would otherwise wait for good); its limits are not known.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction

from trigger_celery.coordination.base import QueueStats
from trigger_celery.coordination.factory import get_store
from trigger_celery.core.options import MAX_QUEUE_LIMIT
from trigger_celery.db import write_transaction
from trigger_celery.engine import dispatch, queueing
from trigger_celery.engine.registry import Queue, registry
from trigger_celery.errors import ConfigurationError
from trigger_celery.models import QueueState
from trigger_celery.off_loop import off_event_loop_methods

log = logging.getLogger("trigger_celery.queues")


@dataclass(frozen=True)
class QueueInfo:
    """A queue and its live counts, summed over its concurrency keys."""

    name: str
    concurrency_limit: int | None  # in force: the override if set, else the code's
    total_limit: int | None
    rate_limit: str | None
    paused: bool
    queued: int
    executing: int
    keys: dict[str, tuple[int, int]]  # concurrency key -> (queued, executing)
    code_limit: int | None = None  # as declared in code
    overridden: bool = False
    declared: bool = True  # False: removed from the code, left paused or with runs


@off_event_loop_methods
class QueuesAPI:
    def pause(self, name: str) -> None:
        """A paused queue starts nothing; runs already executing finish.

        A run that holds its slot already counts as executing (SPEC 4's ``is_executing``):
        one DEQUEUED, sent to Celery and not yet taken by a worker, still starts."""
        self._set(name, True)

    def resume(self, name: str) -> None:
        self._set(name, False)

    def override_limit(self, name: str, limit: int | None) -> None:
        """Set ``name``'s concurrency limit in the database, over the code's; every
        worker honours it (it is pushed to the shared store, and again on a restore).
        ``None`` goes back to the limit declared in code."""
        if limit is not None and (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_QUEUE_LIMIT
        ):
            raise ValueError(
                f"a concurrency limit must be an int from 1 to {MAX_QUEUE_LIMIT}, got {limit!r}"
            )
        q = registry.require_queue(name)
        if limit is not None and q.total_limit is not None and limit > q.total_limit:
            raise ValueError(  # queue()'s rule: each key's runs count toward the total
                f"queue {name!r}: a concurrency limit of {limit} is above its total_limit "
                f"{q.total_limit}: no concurrency key could reach it; use {q.total_limit} or less"
            )
        with write_transaction():  # update_or_create reads, then writes (SQLite's lock)
            QueueState.objects.update_or_create(
                name=name, defaults={"concurrency_limit_override": limit}
            )
            # After the commit: a reconciler that reads the row before it would push the
            # old value, but never after our push (see queueing._push_queues).
            transaction.on_commit(lambda: _pushed_and_dispatched(name))

    def reset_limit(self, name: str) -> None:
        self.override_limit(name, None)

    def _set(self, name: str, paused: bool) -> None:
        _declared_or_left_behind(name)
        with write_transaction():
            QueueState.objects.update_or_create(name=name, defaults={"paused": paused})
            # After the commit, as a limit's override: a pause or resume made in a
            # transaction that rolled back (an ATOMIC_REQUESTS view that failed) changed
            # the store all the same, and a rolled-back pause stopped the queue for good.
            transaction.on_commit(lambda: _when_reachable(lambda: _apply(name, paused), name))

    def retrieve(self, name: str) -> QueueInfo:
        return self._info(name, QueueState.objects.filter(name=name).first())

    def _info(
        self, name: str, state: QueueState | None, rows: list[QueueStats] | None = None
    ) -> QueueInfo:
        if rows is None:
            rows = get_store().stats(name)
        q = _declared_or_left_behind(name, state, rows)
        keys = {r.concurrency_key or "": (r.queued, r.executing) for r in rows}
        override = state.concurrency_limit_override if state else None
        return QueueInfo(
            name=q.name,
            concurrency_limit=q.concurrency_limit if override is None else override,
            total_limit=q.total_limit,
            rate_limit=q.rate_limit,
            paused=bool(state and state.paused),
            queued=sum(r.queued for r in rows),
            executing=sum(r.executing for r in rows),
            keys=keys,
            code_limit=q.concurrency_limit,
            overridden=override is not None,
            declared=name in registry.queues,
        )

    def list(self) -> list[QueueInfo]:
        registry.ensure_discovered()
        # Every queue's state in one query: the dashboard lists hundreds of queues.
        states = {row.name: row for row in QueueState.objects.all()}
        # And every queue's counts in one call to the store, not one per queue.
        stats: dict[str, list[QueueStats]] = defaultdict(list)
        for row in get_store().stats():
            stats[row.queue].append(row)
        left_behind = {n for n, row in states.items() if row.paused} | {
            n for n, rows in stats.items() if any(r.queued or r.executing for r in rows)
        }
        return [
            self._info(name, states.get(name), stats.get(name, []))
            for name in sorted(set(registry.queues) | left_behind)
        ]


def _declared_or_left_behind(
    name: str, state: QueueState | None = None, rows: list[QueueStats] | None = None
) -> Queue:
    """The queue declared in code as ``name``; or, for a name the code no longer
    declares, a stand-in with no limits when the queue was left paused or with runs
    (else the registry's error, which lists the queues declared)."""
    try:
        return registry.require_queue(name)
    except ConfigurationError:
        if state is None:
            state = QueueState.objects.filter(name=name).first()
        if rows is None:
            rows = get_store().stats(name)
        if (state is not None and state.paused) or any(r.queued or r.executing for r in rows):
            return Queue(name)
        raise


def _apply(name: str, paused: bool) -> None:
    get_store().set_paused(name, paused)
    if not paused:
        dispatch.dispatch_ready(name)  # its waiting runs start now, not at the next pump


def _pushed_and_dispatched(name: str) -> None:
    def push() -> None:
        queueing.push_queue(name)
        dispatch.dispatch_ready(name)  # a higher limit may start waiting runs now

    _when_reachable(push, name)


def _when_reachable(step: Callable[[], object], name: str) -> None:
    """A store step after the queue's row is committed: with the store unreachable the
    change still holds (the row), and reconcile and the pump apply it when it is back."""
    try:
        step()
    except Exception:
        log.warning("queue %s: the store is unreachable; reconcile applies the change", name)


queues = QueuesAPI()
