"""The coordination store: the fast, rebuildable side of the run queue.

The database holds every run; the store holds what must be decided atomically and
quickly across processes: which queued runs are waiting in which queue, in what order,
and which runs hold a concurrency slot right now (as leases). Everything in it can be
rebuilt from the database (see ``trigger_celery.dispatch.reconcile``).

Two implementations pass one contract suite (``tests/contract``):

* ``RedisStore`` - production; every decision is one Lua script.
* ``DatabaseStore`` - the embedded default for ``trigger_dev``: tables in the project's
  own database, so several processes on one SQLite file still agree.

Vocabulary
----------
queue
    A named queue declared in code (``queue(name=...)`` or the task's own queue).
concurrency key
    Optional tenant key; each key value is its own copy of the queue ("sub-queue")
    with the queue's ``concurrency_limit``. Keys of one queue are served round-robin.
score
    Sort order inside a sub-queue and the time (unix seconds) before which the entry
    may not start: ``queued_at - priority`` for a fresh run, ``retry_at`` for a retry.
    An entry is *ready* when ``score <= now``.
slot / lease
    A claimed run holds one slot of its sub-queue, of its queue's total (when the queue
    has ``total_limit``) and of the environment until released, or until its lease
    expires without a heartbeat.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


class StoreNotConfiguredError(RuntimeError):
    """The store has no environment limits (new, flushed or restarted): it refuses to
    claim until the engine has restored its limits, pauses and held slots."""


@dataclass(frozen=True)
class QueueConfig:
    """Limits of one named queue. ``None`` means unbounded (but for the environment)."""

    name: str
    concurrency_limit: int | None = None
    # Cap on slots held across all concurrency keys of this queue together.
    total_limit: int | None = None
    # At most ``rate_limit_count`` starts per ``rate_limit_period`` seconds, globally.
    rate_limit_count: int | None = None
    rate_limit_period: float | None = None


@dataclass(frozen=True)
class EnvironmentLimits:
    """The environment's base limit and burst factor (SPEC 4).

    All queues together may hold ``floor(concurrency_limit * burst_factor)`` slots;
    one queue (all its keys together) never more than ``concurrency_limit``.
    """

    concurrency_limit: int = 100
    burst_factor: float = 2.0  # BURST_FACTOR's default


@dataclass(frozen=True)
class Entry:
    """A run waiting in a queue for a slot, for its attempt number ``attempt``."""

    run_id: str
    queue: str
    score: float
    concurrency_key: str | None = None
    attempt: int = 0  # 0: not known (matches any attempt)


@dataclass(frozen=True)
class Claim:
    """A run that won a slot: the caller must now dispatch it (or release it).

    The slot belongs to the attempt its entry was queued for: a release or heartbeat
    naming another attempt of the same run does nothing.
    """

    run_id: str
    queue: str
    concurrency_key: str | None
    lease_expires_at: float
    attempt: int = 0


@dataclass(frozen=True)
class QueueStats:
    """Live counts of one sub-queue (queue + concurrency key)."""

    queue: str
    concurrency_key: str | None
    queued: int  # entries waiting (ready or not)
    executing: int  # slots held
    concurrency_limit: int | None
    paused: bool
    # The lowest score among its entries (ready or not), None without entries: the
    # oldest-queued-age gauge is ``now - oldest_score`` of the queue's sub-queues.
    oldest_score: float | None = None


class CoordinationStore(ABC):
    """Interface every store implements; see the module docstring for the vocabulary.

    Every method is atomic with respect to every other caller, in every process.
    Every method is idempotent where the docstring says so, because callers retry
    after crashes and the reconciler replays state from the database.
    """

    # -- configuration ----------------------------------------------------------------
    @abstractmethod
    def configure_queue(self, config: QueueConfig) -> None:
        """Create or replace a queue's limits. Unconfigured queues are unbounded."""

    @abstractmethod
    def set_environment_limits(
        self, limits: EnvironmentLimits, *, only_if_set: bool = False
    ) -> bool:
        """Set the environment limit and burst factor used by every claim; until they
        are set, the store refuses to claim. With ``only_if_set``, change them only in a
        store that has them (False otherwise)."""

    @abstractmethod
    def environment_limits(self) -> EnvironmentLimits | None:
        """The environment limits claims go by now; None in a store that has none."""

    @abstractmethod
    def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue: a paused queue is never claimed from."""

    @abstractmethod
    def is_paused(self, queue: str) -> bool: ...

    @abstractmethod
    def paused_queues(self) -> set[str]:
        """Every queue paused here (the reconciler compares them with the database's)."""

    # -- the queue --------------------------------------------------------------------
    @abstractmethod
    def enqueue(self, entries: Sequence[Entry]) -> None:
        """Add entries; an entry for a run already queued replaces it (idempotent).

        Enqueuing a run that currently holds a slot is allowed (a retry or a resume):
        the caller releases the slot separately.
        """

    @abstractmethod
    def remove(self, run_id: str) -> bool:
        """Take a run out of its queue (cancel, expiry). True if it was queued."""

    @abstractmethod
    def time(self) -> float:
        """The store's own clock (seconds since the epoch): Redis ``TIME``, or the
        database's for the embedded store. Every lease is measured by it, so a process
        whose clock is off never loses, nor keeps, a lease it should not."""

    @abstractmethod
    def claim(
        self,
        now: float | None,
        *,
        max_count: int,
        lease_seconds: float,
        queue: str | None = None,
    ) -> list[Claim]:
        """Atomically move up to ``max_count`` ready entries into slots.

        Only entries with ``score <= now`` of unpaused queues are eligible. Limits:
        each sub-queue at most its queue's ``concurrency_limit``; the queue's keys
        together at most ``total_limit`` and at most ``min(any, env base limit)``; the
        environment at most ``floor(base * burst)``; starts at most the rate limit.
        Within a sub-queue the lowest score goes first; between the sub-queues of one
        queue, round-robin (a key just served goes to the back); between queues, the
        queue whose ready head is oldest goes first. ``queue`` restricts the claim to one
        queue (all its keys). A claimed entry leaves the queue and holds a slot whose
        lease ends at ``now + lease_seconds``. ``now=None`` is :meth:`time`, read inside
        the claim (what the engine passes); tests pass explicit instants.

        Raises :class:`StoreNotConfiguredError` while no environment limits are set.
        """

    @abstractmethod
    def heartbeat(
        self, run_id: str, now: float | None, lease_seconds: float, *, attempt: int | None = None
    ) -> bool:
        """Extend a held lease to ``now + lease_seconds`` (``now=None``: :meth:`time`).
        False if the run holds none (or, with ``attempt``, if the slot belongs to
        another attempt of the run)."""

    @abstractmethod
    def release(self, run_id: str, *, attempt: int | None = None, unstarted: bool = False) -> bool:
        """Give a run's slot back (idempotent). True if it held one.

        With ``attempt``, only that attempt's slot: a late release by a stale attempt
        never frees the slot of the attempt that replaced it.

        A claim's place in its queue's rate window that no start dated goes back with
        ``unstarted`` (the caller knows the run never began: a send that failed, a
        cancel before the start, a hand-back); otherwise it is dated now, since the run
        may have started without saying so. A rate limit is never exceeded either way.
        """

    @abstractmethod
    def started(self, run_id: str, now: float | None) -> bool:
        """The run began to execute at ``now`` (``None``: :meth:`time`).

        A claim in a rate-limited queue takes its place in the rate window at once, but
        that place is pending: it counts against the limit and never ages out until the
        run starts. This call dates it, so the window of that start runs from ``now``;
        a claim released unstarted gives its place back. A busy worker pool therefore
        never lets more runs *start* in a period than the limit, however long their
        dispatch waited. True if a pending place was dated (False without a rate
        limit, or when already dated)."""

    def enqueue_and_claim(
        self,
        entries: Sequence[Entry],
        now: float | None,
        *,
        max_count: int,
        lease_seconds: float,
        queue: str | None = None,
    ) -> list[Claim]:
        """:meth:`enqueue`, then :meth:`claim`: a store may do both in one round trip."""
        self.enqueue(entries)
        return self.claim(now, max_count=max_count, lease_seconds=lease_seconds, queue=queue)

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
        """:meth:`release`, then :meth:`claim`: a store may do both in one round trip."""
        self.release(run_id, attempt=attempt, unstarted=unstarted)
        return self.claim(now, max_count=max_count, lease_seconds=lease_seconds, queue=queue)

    def claim_new(self, entry: Entry, now: float | None, *, lease_seconds: float) -> Claim | None:
        """A slot for a run that is being created and is not queued yet, only if it would
        be the next run its queue starts anyway: no ready entry of the queue waits, and
        every limit of :meth:`claim` has room. Returns None, changing nothing, otherwise;
        the caller then queues the run as usual.

        Lets a trigger take its slot before its row exists and write the row dispatched
        (one statement instead of two). A store that cannot decide this in one step
        keeps this default, which always says no.

        Raises :class:`StoreNotConfiguredError` as :meth:`claim` does.
        """
        return None

    @abstractmethod
    def adopt(self, claim: Claim) -> None:
        """Hold a slot for a run the database says is executing but the store forgot
        (after a flush or a Redis restart). Idempotent; no limit is checked."""

    @abstractmethod
    def seed_rate_window(
        self, queue: str, starts: Sequence[tuple[str, float]], pending: Sequence[str]
    ) -> None:
        """Give a restored store ``queue``'s rate window back: ``starts`` are (a name
        unique to the start, its time) of the last period, ``pending`` the runs claimed
        but not started (their start dates their place). Idempotent."""

    @abstractmethod
    def expired_leases(self, now: float | None) -> list[Claim]:
        """Slots whose lease ended before ``now`` (``None``: :meth:`time`); not released
        by this call."""

    # -- introspection and repair -----------------------------------------------------
    @abstractmethod
    def next_ready_at(self) -> float | None:
        """When the next queued entry that is not ready yet becomes ready, or None.

        Entries already ready but blocked by a limit are not reported: releasing a
        slot dispatches them.
        """

    @abstractmethod
    def queued_run_ids(self) -> set[str]: ...

    @abstractmethod
    def known_run_ids(self, run_ids: Sequence[str]) -> set[str]:
        """Those of ``run_ids`` that have a queue entry or hold a slot, in one snapshot
        (a run moving from its entry to a slot meanwhile is known either way). A store
        that lost part of an entry (keys evicted) forgets the rest and does not count it."""

    @abstractmethod
    def holding_run_ids(self) -> set[str]:
        """Runs that hold a slot (leased), expired or not."""

    @abstractmethod
    def stats(self, queue: str | None = None) -> list[QueueStats]:
        """Counts per sub-queue that has entries or held slots (and per paused queue)."""

    @abstractmethod
    def flush(self) -> None:
        """Forget everything (tests, and the 'Redis was flushed' recovery scenario)."""
