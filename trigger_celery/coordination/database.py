"""The embedded coordination store: the same contract on the project's own database.

Used by ``trigger_dev`` and by deployments without Redis. Every operation is one
transaction that first locks a single mutex row (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite's IMMEDIATE transactions serialize writers already), so limits hold
across processes. It trades throughput for having no extra service.
"""

from __future__ import annotations

import math
import time
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
from trigger_celery.models import (
    StoreEntry,
    StoreKeyTurn,
    StoreQueue,
    StoreSetting,
    StoreSlot,
    StoreStart,
)

_MUTEX = "mutex"


def _lock() -> None:
    StoreSetting.objects.get_or_create(key=_MUTEX, defaults={"value": 0})
    StoreSetting.objects.select_for_update().filter(key=_MUTEX).first()


def _key(ck: str | None) -> str:
    return ck or ""


class DatabaseStore(CoordinationStore):
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
        return StoreQueue.objects.filter(name=queue, paused=True).exists()

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
            return StoreEntry.objects.filter(run_id=run_id).delete()[0] > 0

    def claim(
        self, now: float, *, max_count: int, lease_seconds: float, queue: str | None = None
    ) -> list[Claim]:
        with transaction.atomic():
            _lock()
            settings = dict(
                StoreSetting.objects.filter(key__in=["limit", "burst"]).values_list("key", "value")
            )
            env_limit = int(settings.get("limit", 100))
            env_max = math.floor(env_limit * settings.get("burst", 1.0))
            env_held = StoreSlot.objects.count()
            if env_held >= env_max:
                return []
            ready = StoreEntry.objects.filter(score__lte=now)
            if queue is not None:
                ready = ready.filter(queue=queue)
            heads = ready.values("queue").annotate(oldest=Min("score")).order_by("oldest", "queue")
            claims: list[Claim] = []
            for head in heads:
                if len(claims) >= max_count or env_held >= env_max:
                    break
                q = head["queue"]
                conf = StoreQueue.objects.filter(name=q).first()
                if conf is not None and conf.paused:
                    continue
                limit = conf.concurrency_limit if conf else None
                q_cap = min(env_limit, conf.total_limit) if conf and conf.total_limit else env_limit
                q_held = StoreSlot.objects.filter(queue=q).count()
                rate_left: int | None = None
                if conf and conf.rate_limit_count and conf.rate_limit_period:
                    StoreStart.objects.filter(
                        queue=q, started_at__lte=now - conf.rate_limit_period
                    ).delete()
                    rate_left = conf.rate_limit_count - StoreStart.objects.filter(queue=q).count()
                held_per_key: dict[str, int] = defaultdict(int)
                for row in (
                    StoreSlot.objects.filter(queue=q)
                    .values("concurrency_key")
                    .annotate(n=Count("run_id"))
                ):
                    held_per_key[_key(row["concurrency_key"])] = row["n"]
                turns = dict(
                    StoreKeyTurn.objects.filter(queue=q).values_list("concurrency_key", "served_at")
                )
                keys_ready = sorted(
                    {
                        _key(ck)
                        for ck in ready.filter(queue=q).values_list("concurrency_key", flat=True)
                    },
                    key=lambda k: (turns.get(k, -1.0), k),
                )
                progress = True
                while progress:
                    progress = False
                    for ck in keys_ready:
                        if (
                            len(claims) >= max_count
                            or env_held >= env_max
                            or q_held >= q_cap
                            or (rate_left is not None and rate_left <= 0)
                        ):
                            break
                        if limit is not None and held_per_key[ck] >= limit:
                            continue
                        entry = (
                            ready.filter(queue=q, concurrency_key=ck or None)
                            .order_by("score", "run_id")
                            .first()
                        )
                        if entry is None:
                            continue
                        expiry = now + lease_seconds
                        run_id, entry_key = entry.run_id, entry.concurrency_key
                        # Model.delete() clears the instance's primary key: read it first.
                        StoreEntry.objects.filter(run_id=run_id).delete()
                        StoreSlot.objects.update_or_create(
                            run_id=run_id,
                            defaults={
                                "queue": q,
                                "concurrency_key": entry_key,
                                "lease_expires_at": expiry,
                                "claimed_at": now,
                            },
                        )
                        if rate_left is not None:
                            StoreStart.objects.create(queue=q, started_at=now)
                            rate_left -= 1
                        turn = (
                            StoreKeyTurn.objects.order_by("-served_at")
                            .values_list("served_at", flat=True)
                            .first()
                        )
                        StoreKeyTurn.objects.update_or_create(
                            queue=q, concurrency_key=ck, defaults={"served_at": (turn or 0) + 1}
                        )
                        claims.append(Claim(run_id, q, entry_key, expiry))
                        held_per_key[ck] += 1
                        env_held += 1
                        q_held += 1
                        progress = True
            return claims

    def heartbeat(self, run_id: str, now: float, lease_seconds: float) -> bool:
        with transaction.atomic():
            return bool(
                StoreSlot.objects.filter(run_id=run_id).update(lease_expires_at=now + lease_seconds)
            )

    def release(self, run_id: str) -> bool:
        with transaction.atomic():
            return StoreSlot.objects.filter(run_id=run_id).delete()[0] > 0

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
            StoreEntry.objects.filter(score__gt=time.time())
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
