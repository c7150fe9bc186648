"""The embedded coordination store: the same contract on the project's own database.

Used by ``trigger_dev`` and by deployments without Redis. Every operation is one
transaction that first locks a single mutex row (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite's IMMEDIATE transactions serialize writers already), so limits hold
across processes. It trades throughput for having no extra service.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from django.db import connection
from django.db.models import Count, Min, QuerySet

from trigger_celery.coordination.base import (
    Claim,
    CoordinationStore,
    Entry,
    EnvironmentLimits,
    QueueConfig,
    QueueStats,
)
from trigger_celery.coordination.database_claim import claim_under_lock, lock_store
from trigger_celery.core import clock
from trigger_celery.db import write_transaction
from trigger_celery.store_models import (
    StoreEntry,
    StoreKeyTurn,
    StoreQueue,
    StoreSetting,
    StoreSlot,
    StoreStart,
)


def _slot_of(run_id: str, attempt: int | None) -> QuerySet[StoreSlot]:
    """The slot ``run_id`` holds, if it belongs to ``attempt`` (0 or None: any attempt)."""
    slot = StoreSlot.objects.filter(run_id=run_id)
    return slot.filter(attempt__in=[0, attempt]) if attempt else slot


class DatabaseStore(CoordinationStore):
    """The store on the ORM tables ``Store*`` (see ``trigger_celery.models``).

    Claims read every count they need up front (a few aggregate queries), decide in
    Python under the mutex, then write in bulk: queries per claim stay constant plus
    one per sub-queue served. Release, remove and heartbeat are single statements and
    need no mutex (they only ever free capacity or touch one row).
    """

    # -- configuration ------------------------------------------------------------------
    def configure_queue(self, config: QueueConfig) -> None:
        with write_transaction():
            row, _ = StoreQueue.objects.get_or_create(name=config.name)
            row.concurrency_limit = config.concurrency_limit
            row.total_limit = config.total_limit
            row.rate_limit_count = config.rate_limit_count
            row.rate_limit_period = config.rate_limit_period
            row.save()

    def set_environment_limits(
        self, limits: EnvironmentLimits, *, only_if_set: bool = False
    ) -> bool:
        with write_transaction():
            if only_if_set and not StoreSetting.objects.filter(key="limit").exists():
                return False
            StoreSetting.objects.update_or_create(
                key="limit", defaults={"value": limits.concurrency_limit}
            )
            StoreSetting.objects.update_or_create(
                key="burst", defaults={"value": limits.burst_factor}
            )
        return True

    def environment_limits(self) -> EnvironmentLimits | None:
        values = dict(
            StoreSetting.objects.filter(key__in=["limit", "burst"]).values_list("key", "value")
        )
        if "limit" not in values or "burst" not in values:
            return None
        return EnvironmentLimits(int(values["limit"]), float(values["burst"]))

    def set_paused(self, queue: str, paused: bool) -> None:
        with write_transaction():
            StoreQueue.objects.update_or_create(name=queue, defaults={"paused": paused})

    def is_paused(self, queue: str) -> bool:
        return bool(StoreQueue.objects.filter(name=queue, paused=True).exists())

    def paused_queues(self) -> set[str]:
        return set(StoreQueue.objects.filter(paused=True).values_list("name", flat=True))

    # -- the queue ----------------------------------------------------------------------
    def enqueue(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        with write_transaction():
            lock_store()
            StoreEntry.objects.filter(run_id__in=[e.run_id for e in entries]).delete()
            StoreEntry.objects.bulk_create(
                [
                    StoreEntry(e.run_id, e.queue, e.concurrency_key, e.score, e.attempt)
                    for e in entries
                ]
            )

    def remove(self, run_id: str) -> bool:
        with write_transaction():
            return bool(StoreEntry.objects.filter(run_id=run_id).delete()[0] > 0)

    def time(self) -> float:
        return database_time()

    def claim(
        self, now: float | None, *, max_count: int, lease_seconds: float, queue: str | None = None
    ) -> list[Claim]:
        if max_count <= 0:
            return []
        with write_transaction():
            if now is None:
                now = database_time()
            return claim_under_lock(
                now, max_count=max_count, lease_seconds=lease_seconds, queue=queue
            )

    def heartbeat(
        self, run_id: str, now: float | None, lease_seconds: float, *, attempt: int | None = None
    ) -> bool:
        with write_transaction():
            if now is None:
                now = database_time()
            return bool(_slot_of(run_id, attempt).update(lease_expires_at=now + lease_seconds))

    def release(self, run_id: str, *, attempt: int | None = None, unstarted: bool = False) -> bool:
        with write_transaction():
            slot = _slot_of(run_id, attempt)
            if not unstarted:
                # A claim of a rate-limited queue whose start was never dated may have
                # started all the same: it counts from now (see the base class).
                rated = StoreQueue.objects.filter(rate_limit_count__isnull=False)
                undated = slot.filter(started=False, queue__in=rated.values("name"))
                now = None
                for queue in undated.values_list("queue", flat=True):
                    now = database_time() if now is None else now
                    StoreStart.objects.create(queue=queue, started_at=now)
            return bool(slot.delete()[0] > 0)

    def started(self, run_id: str, now: float | None) -> bool:
        with write_transaction():
            slot = StoreSlot.objects.filter(run_id=run_id, started=False).first()
            if slot is None:
                return False
            StoreSlot.objects.filter(run_id=run_id).update(started=True)
            # Only a rate-limited queue keeps starts; any other queue's are never read.
            if not StoreQueue.objects.filter(name=slot.queue, rate_limit_count__isnull=False):
                return False
            StoreStart.objects.create(
                queue=slot.queue, started_at=database_time() if now is None else now
            )
            return True

    def adopt(self, claim: Claim) -> None:
        with write_transaction():
            held = {
                "queue": claim.queue,
                "concurrency_key": claim.concurrency_key,
                "lease_expires_at": claim.lease_expires_at,
                "claimed_at": claim.lease_expires_at,
                "attempt": claim.attempt,
            }
            # Executing already, as the database says; a slot still held keeps what it
            # knew (a start not dated yet is dated by that start).
            StoreSlot.objects.update_or_create(
                run_id=claim.run_id, defaults=held, create_defaults={**held, "started": True}
            )

    def seed_rate_window(
        self, queue: str, starts: Sequence[tuple[str, float]], pending: Sequence[str]
    ) -> None:
        with write_transaction():
            # This store is restored only when new: a window it already keeps is its own.
            if starts and not StoreStart.objects.filter(queue=queue).exists():
                StoreStart.objects.bulk_create(
                    StoreStart(queue=queue, started_at=at) for _, at in starts
                )
            if pending:
                StoreSlot.objects.filter(run_id__in=pending).update(started=False)

    def expired_leases(self, now: float | None) -> list[Claim]:
        if now is None:
            now = database_time()
        return [
            Claim(s.run_id, s.queue, s.concurrency_key, s.lease_expires_at, s.attempt)
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

    def known_run_ids(self, run_ids: Sequence[str]) -> set[str]:
        ids = list(run_ids)
        return set(
            StoreEntry.objects.filter(run_id__in=ids).values_list("run_id", flat=True)
        ) | set(StoreSlot.objects.filter(run_id__in=ids).values_list("run_id", flat=True))

    def holding_run_ids(self) -> set[str]:
        return set(StoreSlot.objects.values_list("run_id", flat=True))

    def stats(self, queue: str | None = None) -> list[QueueStats]:
        entries = StoreEntry.objects.all()
        slots = StoreSlot.objects.all()
        if queue is not None:
            entries = entries.filter(queue=queue)
            slots = slots.filter(queue=queue)
        counts: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0])
        oldest: dict[tuple[str, str | None], float] = {}
        for row in entries.values("queue", "concurrency_key").annotate(
            n=Count("run_id"), head=Min("score")
        ):
            counts[(row["queue"], row["concurrency_key"])][0] = row["n"]
            oldest[(row["queue"], row["concurrency_key"])] = float(row["head"])
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
                oldest.get((q, ck)),
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
        with write_transaction():
            for model in (
                StoreEntry,
                StoreSlot,
                StoreQueue,
                StoreKeyTurn,
                StoreStart,
                StoreSetting,
            ):
                model.objects.all().delete()


# The database's clock, in seconds since the epoch, per vendor.
_TIME_SQL = {
    "postgresql": "SELECT EXTRACT(EPOCH FROM clock_timestamp())",
    "sqlite": "SELECT (julianday('now') - 2440587.5) * 86400.0",
    "mysql": "SELECT UNIX_TIMESTAMP(NOW(6))",
}


def database_time() -> float:
    """The database server's clock: the one the embedded store measures leases by."""
    sql = _TIME_SQL.get(connection.vendor)
    if sql is None:
        return clock.timestamp()
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return float(cursor.fetchone()[0])
