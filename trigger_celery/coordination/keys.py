"""Every Redis key of the Redis store, in one place.

All keys of one environment start with ``tc:{<namespace>}:``. The braces are a Redis
Cluster hash tag: every key of an environment maps to one cluster slot, so a Lua script
may touch any of them. Scripts build key names from that prefix (passed as ARGV[1])
because most of them depend on data read inside the script (a run's queue, say).

``{p}`` below is the prefix; ``<q>`` a queue name; ``<sq>`` a sub-queue id
(``<queue>\\x1f<concurrency key>``, empty key for none).

    {p}env            HASH  limit, burst: the environment limits
    {p}conf:<q>       HASH  limit, total, rate_count, rate_period of queue q
    {p}known          SET   every queue name seen (stats, refresh on limit changes)
    {p}paused         SET   paused queue names
    {p}entry          HASH  run id -> sub-queue id, for every queued run
    {p}sq:<sq>        ZSET  run id -> score: the entries of one sub-queue
    {p}due            ZSET  run id -> score of every queued run (next_ready_at)
    {p}subs:<q>       SET   sub-queues of q that have entries or held slots
    {p}ring:<q>       ZSET  sub-queue -> turn: the round-robin ring of q's *eligible*
                            sub-queues (entries waiting, below their limit)
    {p}heads:<q>      ZSET  sub-queue -> score of its head, same members as the ring
    {p}queues         ZSET  queue -> oldest head among its eligible sub-queues, for
                            queues that could start a run now (not paused, below
                            their caps, not waiting out their rate limit)
    {p}ratewait       ZSET  queue -> when its rate window lets the next start through
    {p}held           HASH  run id -> sub-queue id, for every run holding a slot
    {p}hatt           HASH  run id -> the attempt number its held slot belongs to
    {p}eatt           HASH  run id -> the attempt number its queued entry is for
    {p}leases         ZSET  run id -> lease expiry
    {p}hs:<sq>        SET   runs holding a slot of sub-queue sq
    {p}hq:<q>         SET   runs holding a slot of queue q (all its keys)
    {p}rate:<q>       ZSET  start id -> start time, starts inside q's rate window; a
                            claim not started yet is scored PENDING (1e15), so it
                            stays in the window until its run starts or lets go
    {p}rpend          HASH  run id -> "<q> SEP <turn>": its claim's pending start
    {p}turn           STRING counter ordering round-robin turns (and start ids)
    {p}run-changed:<id>  pub/sub channel: a run changed (``runs.subscribe_to_run``)

A queue or sub-queue that cannot start anything (paused, at a limit, rate limited) is
*parked*: taken out of ``queues`` / ``ring`` so claims never scan it, and put back by
the event that frees it (release, resume, a limit change, its rate window passing).
"""

from __future__ import annotations

SEP = "\x1f"


def prefix(namespace: str) -> str:
    """The key prefix of one environment (carries the cluster hash tag)."""
    return f"tc:{{{namespace}}}:"


def sub_queue_id(queue: str, concurrency_key: str | None) -> str:
    """The id of a queue's copy for one concurrency key (``None``: the queue itself)."""
    return f"{queue}{SEP}{concurrency_key or ''}"


def split_sub_queue(sq: str) -> tuple[str, str | None]:
    """Inverse of :func:`sub_queue_id`."""
    queue, _, key = sq.partition(SEP)
    return queue, key or None


def env(p: str) -> str:
    return f"{p}env"


def conf(p: str, queue: str) -> str:
    return f"{p}conf:{queue}"


def known(p: str) -> str:
    return f"{p}known"


def paused(p: str) -> str:
    return f"{p}paused"


def entry(p: str) -> str:
    return f"{p}entry"


def sub_queue(p: str, sq: str) -> str:
    return f"{p}sq:{sq}"


def due(p: str) -> str:
    return f"{p}due"


def subs(p: str, queue: str) -> str:
    return f"{p}subs:{queue}"


def ratewait(p: str) -> str:
    return f"{p}ratewait"


def held(p: str) -> str:
    return f"{p}held"


def held_attempt(p: str) -> str:
    return f"{p}hatt"


def entry_attempt(p: str) -> str:
    return f"{p}eatt"


def leases(p: str) -> str:
    return f"{p}leases"


def held_sub_queue(p: str, sq: str) -> str:
    return f"{p}hs:{sq}"


def glob_escape(text: str) -> str:
    """Escape glob characters so SCAN MATCH treats ``text`` literally."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def run_changed(p: str, run_id: str) -> str:
    """The pub/sub channel on which changes of one run are announced."""
    return f"{p}run-changed:{run_id}"


def listening(p: str) -> str:
    """A channel every subscriber of run changes also joins: its subscriber count says
    whether anyone listens at all (nothing is published on it)."""
    return f"{p}listening"
