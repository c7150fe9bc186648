"""Every Redis key of the Redis store, in one place.

All keys of one environment start with ``tc:{<namespace>}:``; the braces are a Redis
Cluster hash tag, so every key a script touches lives in one slot.

    {p}env              HASH   limit, burst of the environment
    {p}queues           ZSET   queue name -> score of its oldest queued entry (approx.)
    {p}known            SET    every queue name seen
    {p}paused           SET    paused queue names
    {p}conf:<q>         HASH   limit, total, rate_count, rate_period of queue q
    {p}subs:<q>         ZSET   sub-queue id -> turn (round robin between keys of q)
    {p}sq:<sq>          ZSET   run id -> score, the entries of sub-queue sq
    {p}entry            HASH   run id -> sub-queue id, for every queued run
    {p}due              ZSET   run id -> score, to find the next entry to become ready
    {p}held             HASH   run id -> sub-queue id, for every run holding a slot
    {p}leases           ZSET   run id -> lease expiry
    {p}hs:<sq>          SET    runs holding a slot of sub-queue sq
    {p}hq:<q>           SET    runs holding a slot of queue q (all keys)
    {p}rate:<q>         ZSET   run id -> start time, starts inside the rate window
    {p}turn             STRING counter that orders round-robin turns

A sub-queue id is ``<queue>\\x1f<concurrency key>`` (empty key for none).
"""

from __future__ import annotations

SEP = "\x1f"


def prefix(namespace: str) -> str:
    return f"tc:{{{namespace}}}:"


def sub_queue_id(queue: str, concurrency_key: str | None) -> str:
    return f"{queue}{SEP}{concurrency_key or ''}"


def split_sub_queue(sq: str) -> tuple[str, str | None]:
    queue, _, key = sq.partition(SEP)
    return queue, key or None
