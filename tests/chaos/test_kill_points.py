"""A process SIGKILLed between two commits delays a run by one sweep, never forever.

Each test names a fault point (``trigger_celery.core.faults``) in the environment of the
worker or beat it starts. That process kills itself there, once, and leaves a mark
file: the test first proves the kill happened, then that the parent still completes
with the right output, by the repairs of the pump alone.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.harness import finished, wait_for
from trigger_celery import runs, tasks
from trigger_celery.core.faults import POINTS
from trigger_celery.models import Run

# One sweep (2 s) plus a lease (4 s in the test settings) plus room for a loaded machine.
RECOVERY_SECONDS = 45


def fault_env(point: str, mark: Path, action: str = "kill") -> dict[str, str]:
    assert point in POINTS
    env = {"TRIGGER_CELERY_KILL_AT": point, "TRIGGER_CELERY_KILL_MARK": str(mark)}
    if action != "kill":
        env["TRIGGER_CELERY_KILL_ACTION"] = action
    return env


def wait_for_mark(mark: Path, point: str) -> None:
    # The dying process creates the mark, then writes its point in it: wait for both
    # (read between the two, it was empty, and the test failed in a CI run).
    wait_for(lambda: mark.exists() and mark.read_text(), timeout=60, what=f"the fault at {point}")
    assert mark.read_text().startswith(point)


def test_a_worker_killed_after_a_childs_final_commit_leaves_no_parent_waiting(own, tmp_path):
    mark = tmp_path / "killed"
    own.worker(concurrency=2, env=fault_env("child-final", mark))
    own.beat()
    handle = tasks.trigger("waits-on-child", {"n": 7})
    wait_for_mark(mark, "child-final")
    child = Run.objects.get(parent_id=handle.id)
    assert child.status == "COMPLETED"  # its final write committed before the kill
    run = finished(handle, timeout=RECOVERY_SECONDS)
    assert run.status == "COMPLETED"
    assert run.output == {"child": {"n": 7}}


def test_a_worker_killed_after_the_parents_waiting_commit_still_resumes_it(own, tmp_path):
    mark = tmp_path / "killed"
    own.worker(concurrency=2, env=fault_env("parent-waiting", mark))
    own.beat()
    handle = tasks.trigger("waits-on-child", {"n": 3})
    wait_for_mark(mark, "parent-waiting")
    run = finished(handle, timeout=RECOVERY_SECONDS)
    assert run.status == "COMPLETED"
    assert run.output == {"child": {"n": 3}}
    assert Run.objects.filter(parent_id=handle.id).count() == 1


def test_a_parent_killed_between_its_batch_and_its_waitpoint_finds_the_same_children(own, tmp_path):
    mark = tmp_path / "killed"
    own.worker(concurrency=4, env=fault_env("batch-children-created", mark))
    own.beat()
    handle = tasks.trigger("waits-on-batch", {"count": 4})
    wait_for_mark(mark, "batch-children-created")
    run = finished(handle, timeout=RECOVERY_SECONDS)
    assert run.status == "COMPLETED"
    assert run.output == [0, 1, 2, 3]
    assert run.attempt_count == 2  # the killed attempt was retried, not resumed
    children = Run.objects.filter(parent_id=handle.id)
    assert children.count() == 4
    assert len({c.batch_id for c in children}) == 1


def test_a_beat_killed_after_completing_a_timed_wait_leaves_no_run_waiting(own, tmp_path):
    mark = tmp_path / "killed"
    own.worker(concurrency=2)
    beat = own.beat(env=fault_env("datetime-completed", mark))
    handle = tasks.trigger("waits-a-while", {})
    wait_for_mark(mark, "datetime-completed")
    wait_for(lambda: not beat.alive(), what="the beat to die")
    assert runs.retrieve(handle).status == "WAITING"  # completed wait, no resume: stuck
    own.beat(name="second-beat")
    run = finished(handle, timeout=RECOVERY_SECONDS)
    assert run.status == "COMPLETED"
    assert run.output == "waited"


def test_a_parent_whose_first_attempt_fails_after_it_made_its_batch_completes_once(own, tmp_path):
    # The failure behind this suite: an error between making the batch and recording
    # the waitpoint (SQLite's "database is locked") made the retry wait on a new, empty
    # batch forever.
    mark = tmp_path / "raised"
    own.worker(concurrency=4, env=fault_env("batch-children-created", mark, action="raise"))
    own.beat()
    handle = tasks.trigger("waits-on-batch", {"count": 6})
    wait_for_mark(mark, "batch-children-created")
    run = finished(handle, timeout=RECOVERY_SECONDS)
    assert run.status == "COMPLETED"
    assert run.output == [0, 1, 2, 3, 4, 5]
    assert run.attempts[0].status == "FAILED"
    assert "fault injected" in run.attempts[0].error["message"]
    assert Run.objects.filter(parent_id=handle.id).count() == 6


def test_a_worker_killed_holding_a_run_it_kept_leaves_it_to_the_reaper(own, tmp_path):
    # A limit-1 queue: the first run's worker keeps the second (worker.handoff) and dies
    # before starting it. No message exists for the kept run; its lease ends and the
    # pump queues it again, under the same attempt number (it never started).
    mark = tmp_path / "killed"
    first = tasks.trigger("shared-a", {"tag": "kept", "seconds": 0})
    second = tasks.trigger("shared-a", {"tag": "kept", "seconds": 0})
    assert Run.objects.get(id=second.id).status == "QUEUED"
    own.worker(concurrency=1, env=fault_env("run-kept", mark))
    own.beat()
    wait_for_mark(mark, "run-kept")
    assert Run.objects.get(id=first.id).status == "COMPLETED"
    assert Run.objects.get(id=second.id).status == "DEQUEUED"  # kept, not started
    run = finished(second, timeout=RECOVERY_SECONDS)
    assert run.status == "COMPLETED"
    assert [a.number for a in run.attempts] == [1]


def test_a_worker_killed_holding_the_child_its_parent_waits_on_leaves_it_to_the_reaper(
    own, tmp_path
):
    # The parent suspends and its process keeps the child (worker.waits), then dies
    # before starting it: the child is DEQUEUED with no message, the parent WAITING.
    # The child's lease ends, the pump queues it again, and its end resumes the parent.
    mark = tmp_path / "killed"
    own.worker(concurrency=1, env=fault_env("run-kept", mark))
    own.beat()
    handle = tasks.trigger("waits-on-child", {"n": 5})
    wait_for_mark(mark, "run-kept")
    child = Run.objects.get(parent_id=handle.id)
    assert child.status == "DEQUEUED"  # kept, not started
    assert Run.objects.get(id=handle.id).status == "WAITING"
    run = finished(handle, timeout=RECOVERY_SECONDS)
    assert run.status == "COMPLETED"
    assert run.output == {"child": {"n": 5}}
    assert [a.number for a in Run.objects.get(id=child.id).attempts.all()] == [1]
