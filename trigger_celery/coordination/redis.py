"""The Redis coordination store: every decision is one Lua script (``lua/*.lua``).

Key layout and the parking scheme that keeps claims from scanning blocked queues are
described in :mod:`trigger_celery.coordination.keys`. Time always comes from the caller
(``now``), never from Redis ``TIME``, so tests are deterministic and every process
agrees as far as their clocks do.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from itertools import groupby
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
    StoreNotConfiguredError,
)
from trigger_celery.core import clock

_SCRIPTS: tuple[str, ...] = ("enqueue", "remove", "claim", "claim_new", "heartbeat", "release")
_SCRIPTS += ("adopt", "started", "seed_rate")
_SCRIPTS += ("configure", "set_env", "pause", "known")


def _script_source(name: str) -> str:
    lua = resources.files("trigger_celery.coordination").joinpath("lua")
    # The shared helpers are prepended: Redis scripts cannot import one another.
    return lua.joinpath("_lib.lua").read_text() + "\n" + lua.joinpath(f"{name}.lua").read_text()


def claim_budget(max_count: int) -> int:
    """Most queue/key visits one claim call may make: bounded work per call."""
    return max_count * 4 + 16


def _num(value: float) -> str:
    # repr() round-trips a float exactly; Redis parses it as a double.
    return repr(float(value))


def _entry_args(entries: Sequence[Entry]) -> list[str]:
    """enqueue.lua's arguments: runs in a row that share queue, key, score and attempt
    (a batch's siblings) are one group, their shared fields sent once."""
    args: list[str] = []
    for (queue, key, score, attempt), group in groupby(
        entries, key=lambda e: (e.queue, e.concurrency_key or "", e.score, e.attempt)
    ):
        ids = [e.run_id for e in group]
        args += [str(len(ids)), queue, key, _num(score), str(attempt), *ids]
    return args


def _claim_args(
    now: float | None, max_count: int, lease_seconds: float, queue: str | None
) -> list[str]:
    return [
        "" if now is None else _num(now),
        str(max_count),
        _lease_arg(now, lease_seconds),
        queue or "",
        str(claim_budget(max_count)),
    ]


def _lease_arg(now: float | None, lease_seconds: float) -> str:
    # An absolute expiry, or "+<seconds>": from the Redis server's TIME (see _lib.lua).
    return _num(now + lease_seconds) if now is not None else "+" + _num(lease_seconds)


class RedisStore(CoordinationStore):
    """Production store over one Redis (or one cluster slot per environment)."""

    def __init__(self, client: redis_lib.Redis | str, *, namespace: str) -> None:
        """``client`` is a client made with ``decode_responses=True``, or a URL."""
        if isinstance(client, str):
            client = redis_lib.Redis.from_url(client, decode_responses=True)
        self.client: Any = client
        self.namespace = namespace
        self.p = keys.prefix(namespace)
        self._scripts = {
            name: self.client.register_script(_script_source(name)) for name in _SCRIPTS
        }

    def _run(self, name: str, *args: Any) -> Any:
        return self._scripts[name](args=[self.p, *args])

    # -- configuration ------------------------------------------------------------------
    def configure_queue(self, config: QueueConfig) -> None:
        rate = config.rate_limit_count is not None and config.rate_limit_period is not None

        def opt(value: float | None) -> str:
            return "" if value is None else _num(value)

        self._run(
            "configure",
            config.name,
            opt(config.concurrency_limit),
            opt(config.total_limit),
            opt(config.rate_limit_count) if rate else "",
            opt(config.rate_limit_period) if rate else "",
        )

    def set_environment_limits(
        self, limits: EnvironmentLimits, *, only_if_set: bool = False
    ) -> bool:
        return bool(
            self._run(
                "set_env",
                _num(limits.concurrency_limit),
                _num(limits.burst_factor),
                "1" if only_if_set else "0",
            )
        )

    def environment_limits(self) -> EnvironmentLimits | None:
        limit, burst = self.client.hmget(keys.env(self.p), "limit", "burst")
        if limit is None or burst is None:
            return None
        return EnvironmentLimits(int(float(limit)), float(burst))

    def set_paused(self, queue: str, paused: bool) -> None:
        self._run("pause", queue, "1" if paused else "0")

    def is_paused(self, queue: str) -> bool:
        return bool(self.client.sismember(keys.paused(self.p), queue))

    def paused_queues(self) -> set[str]:
        return set(self.client.smembers(keys.paused(self.p)))  # decode_responses: str

    # -- the queue ----------------------------------------------------------------------
    def enqueue(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        self._run("enqueue", *_entry_args(entries))

    def remove(self, run_id: str) -> bool:
        return bool(self._run("remove", run_id))

    def time(self) -> float:
        seconds, micros = self.client.time()
        return seconds + micros / 1_000_000

    def claim(
        self, now: float | None, *, max_count: int, lease_seconds: float, queue: str | None = None
    ) -> list[Claim]:
        if max_count <= 0:
            return []
        flat = self._run("claim", *_claim_args(now, max_count, lease_seconds, queue))
        return self._claims(flat, now, lease_seconds)

    def enqueue_and_claim(
        self,
        entries: Sequence[Entry],
        now: float | None,
        *,
        max_count: int,
        lease_seconds: float,
        queue: str | None = None,
    ) -> list[Claim]:
        if not entries or max_count <= 0:
            return super().enqueue_and_claim(
                entries, now, max_count=max_count, lease_seconds=lease_seconds, queue=queue
            )
        flat = self._pipelined(
            ("enqueue", _entry_args(entries)),
            ("claim", _claim_args(now, max_count, lease_seconds, queue)),
        )
        return self._claims(flat, now, lease_seconds)

    def release_and_claim(
        self,
        run_id: str,
        attempt: int | None,
        now: float | None,
        *,
        max_count: int,
        lease_seconds: float,
        queue: str | None = None,
        unstarted: bool = False,
    ) -> list[Claim]:
        flat = self._pipelined(
            ("release", [run_id, str(attempt or 0), "0" if unstarted else "1"]),
            ("claim", _claim_args(now, max_count, lease_seconds, queue)),
        )
        return self._claims(flat, now, lease_seconds)

    def claim_new(self, entry: Entry, now: float | None, *, lease_seconds: float) -> Claim | None:
        flat = self._run(
            "claim_new",
            entry.run_id,
            entry.queue,
            entry.concurrency_key or "",
            str(entry.attempt),
            _lease_arg(now, lease_seconds),
            "" if now is None else _num(now),
        )
        claims = self._claims(flat, now, lease_seconds)
        return claims[0] if claims else None

    def _pipelined(self, *calls: tuple[str, Sequence[str]]) -> Any:
        """Run scripts back to back in one round trip and return the last one's reply.

        A script Redis does not have cached yet (a new or restarted server) fails alone
        while the others run: it is loaded and run again on its own. If an earlier one
        was missing, the last (a claim) runs once more after it, so what the earlier
        one freed or enqueued can start now; both claims' replies are returned.
        """
        pipe = self.client.pipeline(transaction=False)
        for name, args in calls:
            pipe.evalsha(self._scripts[name].sha, 0, self.p, *args)
        replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(
                reply, redis_lib.exceptions.NoScriptError
            ):
                raise reply
        missing = [
            i for i, r in enumerate(replies) if isinstance(r, redis_lib.exceptions.NoScriptError)
        ]
        if not missing:
            return replies[-1]
        for i in missing:
            replies[i] = self._run(calls[i][0], *calls[i][1])
        last = len(calls) - 1
        if last in missing:  # it ran again after every other: its reply is whole
            return replies[last]
        first = list(replies[last])
        if first[:1] == ["!unconfigured"]:
            return first
        again = list(self._run(calls[last][0], *calls[last][1]))
        return first if again[:1] == ["!unconfigured"] else first + again

    def _claims(self, flat: Any, now: float | None, lease_seconds: float) -> list[Claim]:
        # With now=None the script read Redis's clock: the claims carry this process's
        # estimate of the expiry.
        expiry = (now if now is not None else clock.timestamp()) + lease_seconds
        if flat[:1] == ["!unconfigured"]:
            raise StoreNotConfiguredError(f"store {self.p!r} has no environment limits")
        claims = []
        for i in range(0, len(flat), 3):
            q, ck = keys.split_sub_queue(flat[i + 1])
            claims.append(Claim(flat[i], q, ck, expiry, int(flat[i + 2])))
        return claims

    def heartbeat(
        self, run_id: str, now: float | None, lease_seconds: float, *, attempt: int | None = None
    ) -> bool:
        return bool(
            self._run("heartbeat", run_id, _lease_arg(now, lease_seconds), str(attempt or 0))
        )

    def release(self, run_id: str, *, attempt: int | None = None, unstarted: bool = False) -> bool:
        return bool(self._run("release", run_id, str(attempt or 0), "0" if unstarted else "1"))

    def seed_rate_window(
        self, queue: str, starts: Sequence[tuple[str, float]], pending: Sequence[str]
    ) -> None:
        flat = [value for name, at in starts for value in (name, _num(at))]
        self._run("seed_rate", queue, str(len(starts)), *flat, *pending)

    def started(self, run_id: str, now: float | None) -> bool:
        return bool(self._run("started", run_id, "" if now is None else _num(now)))

    def adopt(self, claim: Claim) -> None:
        sq = keys.sub_queue_id(claim.queue, claim.concurrency_key)
        self._run("adopt", claim.run_id, sq, _num(claim.lease_expires_at), str(claim.attempt))

    def expired_leases(self, now: float | None) -> list[Claim]:
        if now is None:
            now = self.time()
        expired = self.client.zrangebyscore(
            keys.leases(self.p), "-inf", f"({_num(now)}", withscores=True
        )
        if not expired:
            return []
        ids = [run_id for run_id, _ in expired]
        pipe = self.client.pipeline(transaction=True)
        pipe.hmget(keys.held(self.p), ids)
        pipe.hmget(keys.held_attempt(self.p), ids)
        sqs, attempts = pipe.execute()
        claims = []
        for (run_id, expiry), sq, attempt in zip(expired, sqs, attempts, strict=True):
            if sq is None:  # released between the two reads
                continue
            q, ck = keys.split_sub_queue(sq)
            claims.append(Claim(run_id, q, ck, float(expiry), int(attempt or 0)))
        return claims

    # -- introspection and repair ---------------------------------------------------------
    def next_ready_at(self) -> float | None:
        """The next future entry score, or when a rate-limited queue may start again.

        Entries of paused queues count too (a spare wake-up costs one empty claim).
        """
        now = f"({_num(clock.timestamp())}"
        pipe = self.client.pipeline(transaction=False)
        pipe.zrangebyscore(keys.due(self.p), now, "+inf", start=0, num=1, withscores=True)
        pipe.zrangebyscore(keys.ratewait(self.p), now, "+inf", start=0, num=1, withscores=True)
        found = [float(rows[0][1]) for rows in pipe.execute() if rows]
        return min(found) if found else None

    def queued_run_ids(self) -> set[str]:
        return set(self.client.hkeys(keys.entry(self.p)))

    def known_run_ids(self, run_ids: Sequence[str]) -> set[str]:
        if not run_ids:
            return set()
        # One script: read in two steps, a run claimed between them looked lost. It also
        # drops listings whose sub-queue an evicting Redis lost, and re-indexes the rest.
        return set(self._run("known", *run_ids))

    def holding_run_ids(self) -> set[str]:
        return set(self.client.hkeys(keys.held(self.p)))

    def stats(self, queue: str | None = None) -> list[QueueStats]:
        names = [queue] if queue else sorted(self.client.smembers(keys.known(self.p)))
        if not names:
            return []
        pipe = self.client.pipeline(transaction=False)
        for q in names:
            pipe.smembers(keys.subs(self.p, q))
            pipe.hget(keys.conf(self.p, q), "limit")
            pipe.sismember(keys.paused(self.p), q)
        first = pipe.execute()
        per_queue = [
            (q, sorted(first[3 * i]), first[3 * i + 1], bool(first[3 * i + 2]))
            for i, q in enumerate(names)
        ]
        # MULTI/EXEC so the counts of one call are one consistent snapshot.
        pipe = self.client.pipeline(transaction=True)
        for _, sqs, _, _ in per_queue:
            for sq in sqs:
                pipe.zcard(keys.sub_queue(self.p, sq))
                pipe.scard(keys.held_sub_queue(self.p, sq))
                pipe.zrange(keys.sub_queue(self.p, sq), 0, 0, withscores=True)  # the head
        counts = iter(pipe.execute())
        out: list[QueueStats] = []
        for q, sqs, raw_limit, is_paused in per_queue:
            limit = int(float(raw_limit)) if raw_limit is not None else None
            rows = []
            for sq in sqs:
                queued, executing, head = next(counts), next(counts), next(counts)
                if queued or executing:
                    ck = keys.split_sub_queue(sq)[1]
                    oldest = float(head[0][1]) if head else None
                    rows.append(QueueStats(q, ck, queued, executing, limit, is_paused, oldest))
            if not rows and is_paused:
                rows.append(QueueStats(q, None, 0, 0, limit, True))
            out.extend(rows)
        return out

    def flush(self) -> None:
        batch: list[str] = []
        pattern = keys.glob_escape(self.p) + "*"
        for key in self.client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self.client.delete(*batch)
                batch.clear()
        if batch:
            self.client.delete(*batch)
