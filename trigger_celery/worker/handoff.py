"""The worker that frees a slot starts the run that gets it, without a message.

When an attempt ends, its slot goes to the next run that may start
(``dispatch.release_and_dispatch``). Sending that run to Celery only for a process like
this one to receive it costs a message, a broker delivery and a turn of the pool, and
that is most of a limit-1 queue's turnover. So a process executing an ``execute_run``
message keeps one such run, if it goes to the same Celery queue, and starts it as soon
as its own attempt has settled. A run that triggers a child and suspends at once to wait
for it (``trigger_and_wait``, ``batch_trigger_and_wait``) keeps its child the same way
(``worker.waits``): the child starts here when the parent has suspended, and the parent,
resumed by the child's end, starts here after it. One message for the three attempts.

Nothing else changes for the kept run: it holds its slot under a lease and its row is
DEQUEUED, exactly as if it had been sent, and its start is fenced the same way. A
process killed before it starts a kept run leaves a DEQUEUED run whose lease ends; the
reaper queues it again, as it does for a sent run whose message was lost.

Limits, so that a chain of handoffs stays a detail of one message:

* only while the message is young: no run is kept after :data:`CHAIN_SECONDS` since
  the message started, or after :data:`MAX_CHAIN` kept runs; the rest are sent;
* one kept run at a time, and only for the Celery queue the ended run came from (a run
  for other machines or regions goes to the workers that consume its queue);
* never under a Celery time limit, which is the message's and would cut a kept run
  short, nor when pool processes are recycled after ``worker_max_tasks_per_child``
  tasks (a chain would stretch that count).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from trigger_celery.engine import dispatch

log = logging.getLogger("trigger_celery.worker")

CHAIN_SECONDS = 1.0
MAX_CHAIN = 100


@dataclass
class _Chain:
    deadline: float
    kept: tuple[str, int, str] | None = None  # run id, attempt, Celery queue
    count: int = 0


_local = threading.local()  # a thread pool executes several messages at once


@contextmanager
def chain() -> Iterator[None]:
    """Let the attempts run inside keep the runs their slots go to (see :func:`take`).
    A run still kept when the block ends (it raised) is sent to Celery."""
    _local.chain = _Chain(deadline=time.monotonic() + CHAIN_SECONDS)
    try:
        yield
    finally:
        current: _Chain = _local.chain
        _local.chain = None
        if current.kept is not None:
            run_id, attempt, celery_queue = current.kept
            try:
                dispatch.send_to_queue(run_id, attempt, celery_queue)
            except Exception:
                log.exception("could not send run %s; it is sent again when its lease ends", run_id)


def keeper(machine: str, region: str) -> dispatch.Keep | None:
    """What ``dispatch`` offers the runs it dequeues to, after an attempt of a run with
    this ``machine`` and ``region`` ended; None outside :func:`chain` or past its limits."""
    current: _Chain | None = getattr(_local, "chain", None)
    if (
        current is None
        or current.kept is not None
        or current.count >= MAX_CHAIN
        or time.monotonic() > current.deadline
    ):
        return None
    own_queue = dispatch.celery_queue_of(machine, region)

    def keep(run_id: str, attempt: int, celery_queue: str) -> bool:
        if current.kept is not None or celery_queue != own_queue:
            return False
        current.kept = (run_id, attempt, celery_queue)
        current.count += 1
        return True

    return keep


def holds(run_id: str) -> bool:
    """Whether this process keeps ``run_id`` to start it later (so it has not started)."""
    current: _Chain | None = getattr(_local, "chain", None)
    return current is not None and current.kept is not None and current.kept[0] == run_id


def take() -> tuple[str, int] | None:
    """The run kept since the last call (run id, attempt), to start now; None if none."""
    current: _Chain | None = getattr(_local, "chain", None)
    if current is None or current.kept is None:
        return None
    run_id, attempt, _ = current.kept
    current.kept = None
    return run_id, attempt
