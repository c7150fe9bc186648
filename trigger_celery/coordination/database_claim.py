"""How the embedded store decides a claim: limits read once, winners picked in Python.

A claim takes the store's mutex row, reads every count it needs up front (a few
aggregate queries), picks winners in Python - oldest ready head first across queues,
round-robin across a queue's keys, within every limit - and writes them in bulk, so
the queries per claim stay constant plus one per sub-queue served.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Count, Min, QuerySet

from trigger_celery.coordination.base import Claim, StoreNotConfiguredError
from trigger_celery.store_models import (
    StoreEntry,
    StoreKeyTurn,
    StoreQueue,
    StoreSetting,
    StoreSlot,
    StoreStart,
)

_MUTEX = "mutex"


def lock_store() -> dict[str, float]:
    """Take the store's mutex row for this transaction; return the env settings.

    One statement both locks (``SELECT ... FOR UPDATE`` on PostgreSQL) and reads the
    settings; on SQLite the IMMEDIATE transaction already holds the write lock.
    """
    rows: dict[str, float] = {}
    for _ in range(2):
        rows = dict(
            StoreSetting.objects.select_for_update()
            .filter(key__in=[_MUTEX, "limit", "burst", "turn"])
            .values_list("key", "value")
        )
        if _MUTEX in rows:
            return rows
        # First use: create the mutex row (get_or_create copes with a racing creator).
        StoreSetting.objects.get_or_create(key=_MUTEX, defaults={"value": 0})
    return rows


def _key(ck: str | None) -> str:
    return ck or ""


_SubQueue = tuple[str, str]  # (queue, concurrency key or "")


@dataclass
class _Counts:
    """What a claim checks its limits against; each winner is added as it is taken."""

    base: int  # one queue's cap, all its keys together
    max_slots: int  # all queues together: the base limit with burst
    turn: float  # the round-robin clock: ``served_at`` of the last key served
    sub_queue: defaultdict[_SubQueue, int]  # slots held, here and below
    queue: defaultdict[str, int]
    env: int

    @classmethod
    def locked(cls) -> _Counts:
        """Take the mutex, then read the settings and the slots held (one query each)."""
        settings = lock_store()
        if "limit" not in settings:
            raise StoreNotConfiguredError("the embedded store has no environment limits")
        sub_queue: defaultdict[_SubQueue, int] = defaultdict(int)
        queue: defaultdict[str, int] = defaultdict(int)
        for row in StoreSlot.objects.values("queue", "concurrency_key").annotate(n=Count("run_id")):
            sub_queue[(row["queue"], _key(row["concurrency_key"]))] += row["n"]
            queue[row["queue"]] += row["n"]
        base = int(settings.get("limit", 100))
        # The epsilon keeps 100 * 1.15 (114.99999999999999) from flooring to 114.
        max_slots = math.floor(base * settings.get("burst", 2.0) + 1e-9)
        turn = settings.get("turn", 0.0)
        return cls(base, max_slots, turn, sub_queue, queue, sum(queue.values()))

    def add(self, q: str, ck: str) -> float:
        """Count one more slot held by ``(q, ck)``; return the key's new turn."""
        self.sub_queue[(q, ck)] += 1
        self.queue[q] += 1
        self.env += 1
        self.turn += 1
        return self.turn


def _ready(
    now: float, confs: dict[str, StoreQueue], queue: str | None
) -> tuple[QuerySet[StoreEntry], dict[str, dict[str, float]]]:
    """Entries that may start now, and each sub-queue's lowest score among them (one query)."""
    ready = StoreEntry.objects.filter(score__lte=now).exclude(
        queue__in=[name for name, c in confs.items() if c.paused]
    )
    if queue is not None:
        ready = ready.filter(queue=queue)
    heads: dict[str, dict[str, float]] = defaultdict(dict)
    for row in ready.values("queue", "concurrency_key").annotate(head=Min("score")):
        heads[row["queue"]][_key(row["concurrency_key"])] = row["head"]
    return ready, heads


def _rate_left(now: float, confs: dict[str, StoreQueue], queues: Iterable[str]) -> dict[str, int]:
    """Starts left in each rate-limited queue's window; pruning older ones keeps the table small."""
    left: dict[str, int] = {}
    for q in queues:
        conf = confs.get(q)
        if conf and conf.rate_limit_count and conf.rate_limit_period:
            starts = StoreStart.objects.filter(queue=q)
            # A start at t counts while t > now - period; a claim not started yet, always.
            starts.filter(started_at__lte=now - conf.rate_limit_period).delete()
            unstarted = StoreSlot.objects.filter(queue=q, started=False).count()
            left[q] = conf.rate_limit_count - starts.count() - unstarted
    return left


def _last_turns(queues: Iterable[str]) -> dict[_SubQueue, float]:
    """When each key of ``queues`` was last served, on the round-robin clock (one query)."""
    turns = StoreKeyTurn.objects.filter(queue__in=list(queues))
    rows = turns.values_list("queue", "concurrency_key", "served_at")
    return {(q, ck): served for q, ck, served in rows}


@dataclass
class _Picker:
    """Decides in Python, under the mutex, which ready entries win a slot."""

    counts: _Counts
    confs: dict[str, StoreQueue]
    ready: QuerySet[StoreEntry]
    heads: dict[str, dict[str, float]]  # sub-queues still eligible in this call
    rate_left: dict[str, int]
    turns: dict[_SubQueue, float]
    max_count: int
    claims: list[Claim] = field(default_factory=list)
    served: dict[_SubQueue, float] = field(default_factory=dict)  # the turns to write
    pending: dict[_SubQueue, list[StoreEntry]] = field(default_factory=dict)  # fetched once each

    def pick(self, expiry: float) -> list[Claim]:
        """Take winners one at a time until ``max_count`` or the limits stop the claim."""
        while len(self.claims) < self.max_count and self.counts.env < self.counts.max_slots:
            self._drop_blocked()
            if not self.heads:
                break
            q, ck = self._next_sub_queue()
            entries = self._entries(q, ck)
            if entries:
                self._take(q, ck, entries.pop(0), expiry)
            if entries:
                self.heads[q][ck] = entries[0].score
            else:
                # Its fetch (sized by the room left) is used up: drained, or at a limit.
                del self.heads[q][ck]
        return self.claims

    def _sub_queue_room(self, q: str, ck: str) -> int:
        conf = self.confs.get(q)
        if conf is None or conf.concurrency_limit is None:
            return self.max_count
        return int(conf.concurrency_limit) - self.counts.sub_queue[(q, ck)]

    def _queue_room(self, q: str) -> int:
        conf = self.confs.get(q)
        cap = self.counts.base
        if conf is not None and conf.total_limit is not None:
            cap = min(cap, int(conf.total_limit))
        return min(cap - self.counts.queue[q], self.rate_left.get(q, self.max_count))

    def _drop_blocked(self) -> None:
        """Forget the queues and sub-queues a limit keeps from starting anything now."""
        for q in list(self.heads):
            if self._queue_room(q) <= 0:
                del self.heads[q]
                continue
            for ck in [ck for ck in self.heads[q] if self._sub_queue_room(q, ck) <= 0]:
                del self.heads[q][ck]
            if not self.heads[q]:
                del self.heads[q]

    def _next_sub_queue(self) -> _SubQueue:
        """The queue whose ready head is oldest, then its key served longest ago."""
        heads = self.heads
        q = min(heads, key=lambda name: (min(heads[name].values()), name))
        # Keys never served go before all others (oldest head first among them), so a
        # new key is not starved by the ones already taking turns.
        ck = min(heads[q], key=lambda k: (self.turns.get((q, k), -1.0), heads[q][k], k))
        return q, ck

    def _entries(self, q: str, ck: str) -> list[StoreEntry]:
        """The sub-queue's ready entries in order, fetched once and only as many as fit now."""
        if (q, ck) not in self.pending:
            room = min(self.max_count - len(self.claims), self.counts.max_slots - self.counts.env)
            room = min(room, self._sub_queue_room(q, ck), self._queue_room(q))
            ready = self.ready.filter(queue=q, concurrency_key=ck or None)
            self.pending[(q, ck)] = list(ready.order_by("score", "run_id")[:room])
        return self.pending[(q, ck)]

    def _take(self, q: str, ck: str, entry: StoreEntry, expiry: float) -> None:
        """Count a winner against every limit and send its key to the back."""
        self.claims.append(Claim(entry.run_id, q, entry.concurrency_key, expiry, entry.attempt))
        if q in self.rate_left:
            self.rate_left[q] -= 1
        self.turns[(q, ck)] = self.served[(q, ck)] = self.counts.add(q, ck)


def _write_claims(picker: _Picker, now: float) -> None:
    """Move the winners from the queue into slots, and record their turns. A slot
    counts in its queue's rate window from now on (see ``_rate_left``)."""
    claims = picker.claims
    ids = [c.run_id for c in claims]
    StoreEntry.objects.filter(run_id__in=ids).delete()
    # A run queued again while it held a slot keeps one slot: the new claim.
    StoreSlot.objects.filter(run_id__in=ids).delete()
    StoreSlot.objects.bulk_create(
        [
            StoreSlot(c.run_id, c.queue, c.concurrency_key, c.lease_expires_at, now, c.attempt)
            for c in claims
        ]
    )
    StoreKeyTurn.objects.bulk_create(
        [
            StoreKeyTurn(queue=q, concurrency_key=ck, served_at=served)
            for (q, ck), served in picker.served.items()
        ],
        update_conflicts=True,
        unique_fields=["queue", "concurrency_key"],
        update_fields=["served_at"],
    )
    StoreSetting.objects.update_or_create(key="turn", defaults={"value": picker.counts.turn})


def claim_under_lock(
    now: float, *, max_count: int, lease_seconds: float, queue: str | None
) -> list[Claim]:
    """``DatabaseStore.claim`` inside its transaction: the steps above, in order."""
    counts = _Counts.locked()
    if counts.env >= counts.max_slots:
        return []
    confs = {c.name: c for c in StoreQueue.objects.all()}
    ready, heads = _ready(now, confs, queue)
    if not heads:
        return []
    rate_left = _rate_left(now, confs, heads)
    turns = _last_turns(heads)
    picker = _Picker(counts, confs, ready, heads, rate_left, turns, max_count)
    claims = picker.pick(expiry=now + lease_seconds)
    if claims:
        _write_claims(picker, now)
    return claims
