"""The Redis coordination store: one Lua script per decision (``lua/*.lua``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis as redis_lib

from trigger_celery.coordination import keys
from trigger_celery.coordination.base import (
    Claim,
    CoordinationStore,
    Entry,
    EnvironmentLimits,
    QueueConfig,
    QueueStats,
)

# Queues (and keys per queue) one claim looks at, bounding the work of one script call.
SCAN_LIMIT = 500


def _script_source(name: str) -> str:
    return resources.files("trigger_celery.coordination").joinpath(f"lua/{name}.lua").read_text()


class RedisStore(CoordinationStore):
    """Production store. Keys are listed in :mod:`trigger_celery.coordination.keys`."""

    def __init__(self, client: redis_lib.Redis | str, *, namespace: str) -> None:
        if isinstance(client, str):
            client = redis_lib.Redis.from_url(client, decode_responses=True)
        self.client: Any = client
        self.p = keys.prefix(namespace)
        self._scripts = {
            name: self.client.register_script(_script_source(name))
            for name in ("enqueue", "remove", "claim", "release", "heartbeat")
        }

    # -- configuration ------------------------------------------------------------------
    def configure_queue(self, config: QueueConfig) -> None:
        fields: dict[str, Any] = {}
        if config.concurrency_limit is not None:
            fields["limit"] = config.concurrency_limit
        if config.total_limit is not None:
            fields["total"] = config.total_limit
        if config.rate_limit_count is not None and config.rate_limit_period is not None:
            fields["rate_count"] = config.rate_limit_count
            fields["rate_period"] = config.rate_limit_period
        pipe = self.client.pipeline()
        pipe.delete(f"{self.p}conf:{config.name}")
        if fields:
            pipe.hset(f"{self.p}conf:{config.name}", mapping=fields)
        pipe.sadd(f"{self.p}known", config.name)
        pipe.execute()

    def set_environment_limits(self, limits: EnvironmentLimits) -> None:
        self.client.hset(
            f"{self.p}env",
            mapping={"limit": limits.concurrency_limit, "burst": limits.burst_factor},
        )

    def set_paused(self, queue: str, paused: bool) -> None:
        if paused:
            self.client.sadd(f"{self.p}paused", queue)
        else:
            self.client.srem(f"{self.p}paused", queue)

    def is_paused(self, queue: str) -> bool:
        return bool(self.client.sismember(f"{self.p}paused", queue))

    # -- the queue ----------------------------------------------------------------------
    def enqueue(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        args: list[Any] = [self.p]
        for e in entries:
            args += [e.run_id, e.queue, e.concurrency_key or "", repr(float(e.score))]
        self._scripts["enqueue"](args=args)

    def remove(self, run_id: str) -> bool:
        return bool(self._scripts["remove"](args=[self.p, run_id]))

    def claim(
        self, now: float, *, max_count: int, lease_seconds: float, queue: str | None = None
    ) -> list[Claim]:
        flat = self._scripts["claim"](
            args=[self.p, repr(now), max_count, repr(lease_seconds), queue or "", SCAN_LIMIT]
        )
        claims = []
        for i in range(0, len(flat), 3):
            q, ck = keys.split_sub_queue(flat[i + 1])
            claims.append(Claim(flat[i], q, ck, float(flat[i + 2])))
        return claims

    def heartbeat(self, run_id: str, now: float, lease_seconds: float) -> bool:
        return bool(self._scripts["heartbeat"](args=[self.p, run_id, repr(now + lease_seconds)]))

    def release(self, run_id: str) -> bool:
        return bool(self._scripts["release"](args=[self.p, run_id]))

    def adopt(self, claim: Claim) -> None:
        sq = keys.sub_queue_id(claim.queue, claim.concurrency_key)
        pipe = self.client.pipeline()  # MULTI/EXEC: all or nothing
        pipe.hset(f"{self.p}held", claim.run_id, sq)
        pipe.zadd(f"{self.p}leases", {claim.run_id: claim.lease_expires_at})
        pipe.sadd(f"{self.p}hs:{sq}", claim.run_id)
        pipe.sadd(f"{self.p}hq:{claim.queue}", claim.run_id)
        pipe.sadd(f"{self.p}known", claim.queue)
        pipe.zadd(f"{self.p}subs:{claim.queue}", {sq: 0}, nx=True)
        pipe.execute()

    def expired_leases(self, now: float) -> list[Claim]:
        expired = self.client.zrangebyscore(f"{self.p}leases", "-inf", f"({now!r}", withscores=True)
        if not expired:
            return []
        sqs = self.client.hmget(f"{self.p}held", [run_id for run_id, _ in expired])
        claims = []
        for (run_id, expiry), sq in zip(expired, sqs, strict=True):
            if sq is None:
                continue
            q, ck = keys.split_sub_queue(sq)
            claims.append(Claim(run_id, q, ck, float(expiry)))
        return claims

    # -- introspection and repair ---------------------------------------------------------
    def next_ready_at(self) -> float | None:
        now = time.time()
        upcoming = self.client.zrangebyscore(
            f"{self.p}due", f"({now!r}", "+inf", start=0, num=1, withscores=True
        )
        return float(upcoming[0][1]) if upcoming else None

    def queued_run_ids(self) -> set[str]:
        return set(self.client.hkeys(f"{self.p}entry"))

    def holding_run_ids(self) -> set[str]:
        return set(self.client.hkeys(f"{self.p}held"))

    def stats(self, queue: str | None = None) -> list[QueueStats]:
        names = [queue] if queue else sorted(self.client.smembers(f"{self.p}known"))
        paused = set(self.client.smembers(f"{self.p}paused"))
        out: list[QueueStats] = []
        for q in names:
            limit = self.client.hget(f"{self.p}conf:{q}", "limit")
            sqs = self.client.zrange(f"{self.p}subs:{q}", 0, -1)
            held_sqs = {
                sq for sq in self.client.hvals(f"{self.p}held") if keys.split_sub_queue(sq)[0] == q
            }
            pipe = self.client.pipeline(transaction=False)
            ordered = sorted(set(sqs) | held_sqs)
            for sq in ordered:
                pipe.zcard(f"{self.p}sq:{sq}")
                pipe.scard(f"{self.p}hs:{sq}")
            counts = pipe.execute()
            rows = []
            for i, sq in enumerate(ordered):
                queued, executing = counts[2 * i], counts[2 * i + 1]
                if queued or executing:
                    rows.append(
                        QueueStats(
                            q,
                            keys.split_sub_queue(sq)[1],
                            queued,
                            executing,
                            int(limit) if limit is not None else None,
                            q in paused,
                        )
                    )
            if not rows and q in paused:
                rows.append(QueueStats(q, None, 0, 0, int(limit) if limit else None, True))
            out.extend(rows)
        return out

    def flush(self) -> None:
        batch: list[str] = []
        for key in self.client.scan_iter(match=f"{self.p}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self.client.delete(*batch)
                batch.clear()
        if batch:
            self.client.delete(*batch)
