"""A busy worker's prefetch buffer never stalls a limit-1 queue (issue: prefetch is safe).

A worker whose only process is busy for a minute must not sit on a run of a limit-1
queue: the run would hold the queue's slot while nothing executes it. A second worker
runs the queue promptly, and no run is sent more than the hand-back requires.
"""

from __future__ import annotations

import re

from tests.integration.harness import Process, finished, max_overlap, wait_for
from tests.taskapp import events
from trigger_celery import tasks
from trigger_celery.models import Attempt, Run

HANDED_BACK = re.compile(r"run (\S+) attempt \d+ waited .* handed back")


def intervals(tag: str) -> list[tuple[float, float]]:
    return [(v[2], v[3]) for v in events.values(f"interval:{tag}")]


def handbacks(*workers: Process) -> dict[str, int]:
    counts: dict[str, int] = {}
    for worker in workers:
        for run_id in HANDED_BACK.findall(worker.log()):
            counts[run_id] = counts.get(run_id, 0) + 1
    return counts


def busy_for_a_minute() -> str:
    hog = tasks.trigger("steady", {"n": 0, "seconds": 60})
    wait_for(
        lambda: Run.objects.filter(id=hog.id, status="EXECUTING").exists(),
        what="the busy worker to start its long run",
    )
    return hog.id


def test_with_a_new_projects_prefetch_a_busy_worker_leaves_the_queue_to_a_free_one(own):
    # Celery's default multiplier (4), as a new project has it; on Redis the worker turns
    # worker_disable_prefetch on, so it reserves nothing while its process is busy.
    busy = own.worker(concurrency=1, prefetch_multiplier=4, name="pf-new-busy")
    assert "worker_disable_prefetch on" in busy.log()
    own.beat()
    busy_for_a_minute()
    free = own.worker(concurrency=1, prefetch_multiplier=4, name="pf-new-free")
    handles = [tasks.trigger("after-death", {"tag": "pf-new", "seconds": 0.2}) for _ in range(10)]
    for handle in handles:
        # Well inside the busy worker's minute: nothing waited for it.
        assert finished(handle, timeout=40).status == "COMPLETED"
    assert len(intervals("pf-new")) == 10
    assert max_overlap(intervals("pf-new")) == 1
    ids = [h.id for h in handles]
    assert Attempt.objects.filter(run_id__in=ids).count() == 10
    # Sent once each: nothing was reserved by the busy worker, so nothing was handed back.
    assert not handbacks(busy, free)
    busy.kill()


def test_a_run_reserved_by_a_busy_worker_is_handed_back_and_runs_once(own):
    # The project turned Celery's prefetch limit off: the busy worker reserves up to
    # 4 messages and holds a run of the limit-1 queue; after a second it hands it back.
    env = {"TC_DISABLE_PREFETCH": "0"}
    busy = own.worker(concurrency=1, prefetch_multiplier=4, env=env, name="pf-held-busy")
    assert "worker_disable_prefetch on" not in busy.log()
    own.beat()
    busy_for_a_minute()
    first = tasks.trigger("after-death", {"tag": "pf-held", "seconds": 0.2})
    wait_for(lambda: first.id in handbacks(busy), what="the busy worker to hand the run back")
    free = own.worker(concurrency=1, prefetch_multiplier=4, env=env, name="pf-held-free")
    handles = [first] + [
        tasks.trigger("after-death", {"tag": "pf-held", "seconds": 0.2}) for _ in range(9)
    ]
    for handle in handles:
        assert finished(handle, timeout=40).status == "COMPLETED"
    assert len(intervals("pf-held")) == 10
    assert max_overlap(intervals("pf-held")) == 1
    ids = [h.id for h in handles]
    # Each ran once, though copies of its message may wait in the busy worker's buffer.
    assert Attempt.objects.filter(run_id__in=ids).count() == 10
    # Sent again only while the busy worker had room in its buffer (4 messages, one of
    # them its long run): not again and again.
    counts = handbacks(busy, free)
    assert all(1 + counts.get(run_id, 0) <= 4 for run_id in ids), counts
    busy.kill()
