"""The embedded coordination store: the same contract on the project's own database.

Used by ``trigger_dev`` and by deployments without Redis. Every operation is one
transaction that first locks a single mutex row (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite's IMMEDIATE transactions serialize writers already), so limits hold
across processes. It trades throughput for having no extra service.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from django.db import transaction
from django.db.models import Count, Min

from trigger_celery.coordination.base import (
    Claim,
    CoordinationStore,
    Entry,
    EnvironmentLimits,
    QueueConfig,
    QueueStats,
)
from trigger_celery.core import clock
from trigger_celery.models import (
    StoreEntry,
    StoreKeyTurn,
    StoreQueue,
    StoreSetting,
    StoreSlot,
    StoreStart,
)

_MUTEX = "mutex"


def _lock() -> dict[str, float]:
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


class DatabaseStore(CoordinationStore):
    """The store on the ORM tables ``Store*`` (see ``trigger_celery.models``).

    Claims read every count they need up front (a few aggregate queries), decide in
    Python under the mutex, then write in bulk: queries per claim stay constant plus
    one per sub-queue served. Release, remove and heartbeat are single statements and
    need no mutex (they only ever free capacity or touch one row).
    """

    # -- configuration ------------------------------------------------------------------
    def configure_queue(self, config: QueueConfig) -> None:
        with transaction.atomic():
            row, _ = StoreQueue.objects.get_or_create(name=config.name)
            row.concurrency_limit = config.concurrency_limit
            row.total_limit = config.total_limit
            row.rate_limit_count = config.rate_limit_count
            row.rate_limit_period = config.rate_limit_period
            row.save()

    def set_environment_limits(self, limits: EnvironmentLimits) -> None:
        with transaction.atomic():
            StoreSetting.objects.update_or_create(
                key="limit", defaults={"value": limits.concurrency_limit}
            )
            StoreSetting.objects.update_or_create(
                key="burst", defaults={"value": limits.burst_factor}
            )

    def set_paused(self, queue: str, paused: bool) -> None:
        with transaction.atomic():
            StoreQueue.objects.update_or_create(name=queue, defaults={"paused": paused})

    def is_paused(self, queue: str) -> bool:
        return bool(StoreQueue.objects.filter(name=queue, paused=True).exists())

    # -- the queue ----------------------------------------------------------------------
    def enqueue(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        with transaction.atomic():
            _lock()
            StoreEntry.objects.filter(run_id__in=[e.run_id for e in entries]).delete()
            StoreEntry.objects.bulk_create(
                [StoreEntry(e.run_id, e.queue, e.concurrency_key, e.score) for e in entries]
            )

    def remove(self, run_id: str) -> bool:
        with transaction.atomic():
            return bool(StoreEntry.objects.filter(run_id=run_id).delete()[0] > 0)

    def claim(
        self, now: float, *, max_count: int, lease_seconds: float, queue: str | None = None
    ) -> list[Claim]:
        if max_count <= 0:
            return []
        with transaction.atomic():
            settings = _lock()
            base = int(settings.get("limit", 100))
            env_max = math.floor(base * settings.get("burst", 1.0) + 1e-9)
            turn = settings.get("turn", 0.0)

            # Slots held now, per sub-queue, queue and environment (one query).
            sq_held: dict[tuple[str, str], int] = defaultdict(int)
            q_held: dict[str, int] = defaultdict(int)
            for row in StoreSlot.objects.values("queue", "concurrency_key").annotate(
                n=Count("run_id")
            ):
                sq_held[(row["queue"], _key(row["concurrency_key"]))] += row["n"]
                q_held[row["queue"]] += row["n"]
            env_held = sum(q_held.values())
            if env_held >= env_max:
                return []

            # Ready heads of every sub-queue of an unpaused queue (one query).
            confs = {c.name: c for c in StoreQueue.objects.all()}
            ready = StoreEntry.objects.filter(score__lte=now).exclude(
                queue__in=[name for name, c in confs.items() if c.paused]
            )
            if queue is not None:
                ready = ready.filter(queue=queue)
            heads: dict[str, dict[str, float]] = defaultdict(dict)
            for row in ready.values("queue", "concurrency_key").annotate(head=Min("score")):
                heads[row["queue"]][_key(row["concurrency_key"])] = row["head"]
            if not heads:
                return []

            # Starts left in each rate-limited candidate queue's window.
            rate_left: dict[str, int] = {}
            for q in heads:
                conf = confs.get(q)
                if conf and conf.rate_limit_count and conf.rate_limit_period:
                    starts = StoreStart.objects.filter(queue=q)
                    # A start at t counts while t > now - period.
                    starts.filter(started_at__lte=now - conf.rate_limit_period).delete()
                    rate_left[q] = conf.rate_limit_count - starts.count()
            turns = {
                (q, ck): served
                for q, ck, served in StoreKeyTurn.objects.filter(queue__in=list(heads)).values_list(
                    "queue", "concurrency_key", "served_at"
                )
            }

            def sq_room(q: str, ck: str) -> int:
                conf = confs.get(q)
                if conf is None or conf.concurrency_limit is None:
                    return max_count
                return int(conf.concurrency_limit) - sq_held[(q, ck)]

            def q_room(q: str) -> int:
                conf = confs.get(q)
                cap = base
                if conf is not None and conf.total_limit is not None:
                    cap = min(cap, int(conf.total_limit))
                return min(cap - q_held[q], rate_left.get(q, max_count))

            # Entries of a sub-queue, fetched once when it is first served.
            pending: dict[tuple[str, str], list[StoreEntry]] = {}
            claims: list[Claim] = []
            expiry = now + lease_seconds
            served_turns: dict[tuple[str, str], float] = {}
            while len(claims) < max_count and env_held < env_max:
                # Drop what cannot start anything now; then the oldest eligible head wins.
                for q in list(heads):
                    if q_room(q) <= 0:
                        del heads[q]
                        continue
                    for ck in [ck for ck in heads[q] if sq_room(q, ck) <= 0]:
                        del heads[q][ck]
                    if not heads[q]:
                        del heads[q]
                if not heads:
                    break
                q = min(heads, key=lambda name: (min(heads[name].values()), name))
                # Round robin: the key served longest ago goes first (keys never served
                # before all others, oldest head first among them).
                ck = min(heads[q], key=lambda k: (turns.get((q, k), -1.0), heads[q][k], k))
                if (q, ck) not in pending:
                    room = min(
                        max_count - len(claims), sq_room(q, ck), q_room(q), env_max - env_held
                    )
                    pending[(q, ck)] = list(
                        ready.filter(queue=q, concurrency_key=ck or None).order_by(
                            "score", "run_id"
                        )[:room]
                    )
                entries = pending[(q, ck)]
                if not entries:
                    del heads[q][ck]
                    continue
                entry = entries.pop(0)
                claims.append(Claim(entry.run_id, q, entry.concurrency_key, expiry))
                sq_held[(q, ck)] += 1
                q_held[q] += 1
                env_held += 1
                if q in rate_left:
                    rate_left[q] -= 1
                turn += 1
                turns[(q, ck)] = served_turns[(q, ck)] = turn
                if entries:
                    heads[q][ck] = entries[0].score
                else:
                    # All its ready entries fetched were taken, or a limit is reached
                    # (the fetch was sized by the room left): it is done for this call.
                    del heads[q][ck]
            if not claims:
                return []
            ids = [c.run_id for c in claims]
            StoreEntry.objects.filter(run_id__in=ids).delete()
            # A run queued again while it held a slot keeps one slot: the new claim.
            StoreSlot.objects.filter(run_id__in=ids).delete()
            StoreSlot.objects.bulk_create(
                [
                    StoreSlot(
                        run_id=c.run_id,
                        queue=c.queue,
                        concurrency_key=c.concurrency_key,
                        lease_expires_at=expiry,
                        claimed_at=now,
                    )
                    for c in claims
                ]
            )
            starts = [
                StoreStart(queue=c.queue, started_at=now) for c in claims if c.queue in rate_left
            ]
            if starts:
                StoreStart.objects.bulk_create(starts)
            StoreKeyTurn.objects.bulk_create(
                [
                    StoreKeyTurn(queue=q, concurrency_key=ck, served_at=served)
                    for (q, ck), served in served_turns.items()
                ],
                update_conflicts=True,
                unique_fields=["queue", "concurrency_key"],
                update_fields=["served_at"],
            )
            StoreSetting.objects.update_or_create(key="turn", defaults={"value": turn})
            return claims

    def heartbeat(self, run_id: str, now: float, lease_seconds: float) -> bool:
        with transaction.atomic():
            return bool(
                StoreSlot.objects.filter(run_id=run_id).update(lease_expires_at=now + lease_seconds)
            )

    def release(self, run_id: str) -> bool:
        with transaction.atomic():
            return bool(StoreSlot.objects.filter(run_id=run_id).delete()[0] > 0)

    def adopt(self, claim: Claim) -> None:
        with transaction.atomic():
            StoreSlot.objects.update_or_create(
                run_id=claim.run_id,
                defaults={
                    "queue": claim.queue,
                    "concurrency_key": claim.concurrency_key,
                    "lease_expires_at": claim.lease_expires_at,
                    "claimed_at": claim.lease_expires_at,
                },
            )

    def expired_leases(self, now: float) -> list[Claim]:
        return [
            Claim(s.run_id, s.queue, s.concurrency_key, s.lease_expires_at)
            for s in StoreSlot.objects.filter(lease_expires_at__lt=now)
        ]

    # -- introspection and repair ---------------------------------------------------------
    def next_ready_at(self) -> float | None:
        paused = StoreQueue.objects.filter(paused=True).values_list("name", flat=True)
        value = (
            StoreEntry.objects.filter(score__gt=clock.timestamp())
            .exclude(queue__in=list(paused))
            .aggregate(m=Min("score"))["m"]
        )
        return float(value) if value is not None else None

    def queued_run_ids(self) -> set[str]:
        return set(StoreEntry.objects.values_list("run_id", flat=True))

    def holding_run_ids(self) -> set[str]:
        return set(StoreSlot.objects.values_list("run_id", flat=True))

    def stats(self, queue: str | None = None) -> list[QueueStats]:
        entries = StoreEntry.objects.all()
        slots = StoreSlot.objects.all()
        if queue is not None:
            entries = entries.filter(queue=queue)
            slots = slots.filter(queue=queue)
        counts: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0])
        for row in entries.values("queue", "concurrency_key").annotate(n=Count("run_id")):
            counts[(row["queue"], row["concurrency_key"])][0] = row["n"]
        for row in slots.values("queue", "concurrency_key").annotate(n=Count("run_id")):
            counts[(row["queue"], row["concurrency_key"])][1] = row["n"]
        confs = {c.name: c for c in StoreQueue.objects.all()}
        out = [
            QueueStats(
                q,
                ck,
                queued,
                executing,
                confs[q].concurrency_limit if q in confs else None,
                bool(confs[q].paused) if q in confs else False,
            )
            for (q, ck), (queued, executing) in sorted(
                counts.items(), key=lambda i: (i[0][0], i[0][1] or "")
            )
        ]
        listed = {s.queue for s in out}
        for name, conf in sorted(confs.items()):
            if conf.paused and name not in listed and (queue is None or queue == name):
                out.append(QueueStats(name, None, 0, 0, conf.concurrency_limit, True))
        return out

    def flush(self) -> None:
        with transaction.atomic():
            for model in (
                StoreEntry,
                StoreSlot,
                StoreQueue,
                StoreKeyTurn,
                StoreStart,
                StoreSetting,
            ):
                model.objects.all().delete()
