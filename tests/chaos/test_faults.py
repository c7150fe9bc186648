"""A poison run, cancels at random moments, and a warm shutdown: one terminal state each."""

from __future__ import annotations

import random
import signal
import time

from tests.integration.harness import finished, wait_for
from tests.taskapp import events
from trigger_celery import runs, tasks
from trigger_celery.core.statuses import FINAL_STATUSES
from trigger_celery.models import Attempt, Run

FINAL = [s.value for s in FINAL_STATUSES]


def test_a_run_that_kills_its_process_every_attempt_crashes_and_others_keep_flowing(own):
    own.worker(concurrency=3)
    own.beat()
    poison = tasks.trigger("poison", {"die_on": [1, 2, 3, 4]})
    others = [tasks.trigger("steady", {"n": i}) for i in range(30)]
    for handle in others:
        assert finished(handle, timeout=90).status == "COMPLETED"
    run = finished(poison, timeout=90)
    assert events.values(f"attempts:{poison.id}") == [1, 2, 3]  # three kills, no loop
    assert run.status == "CRASHED"
    assert [a.status for a in run.attempts] == ["CRASHED", "CRASHED", "CRASHED"]


def test_two_hundred_cancels_at_random_moments_leave_one_terminal_state_each(own):
    own.worker(concurrency=4)
    own.beat()
    rng = random.Random(11)
    handles = (
        [tasks.trigger("echo", {"i": i}, delay="60s") for i in range(50)]  # DELAYED
        + [tasks.trigger("after-death", {"tag": "cq", "seconds": 0.1}) for _ in range(50)]
        + [tasks.trigger("cooperative", {}) for _ in range(50)]  # EXECUTING, many queued
        + [tasks.trigger("sleeper", {"seconds": 30}) for _ in range(50)]  # WAITING
    )
    rng.shuffle(handles)
    seen_before_cancel = {}
    for handle in handles:
        time.sleep(rng.uniform(0, 0.02))
        seen_before_cancel[handle.id] = runs.retrieve(handle).status
        runs.cancel(handle)
    ids = [h.id for h in handles]
    wait_for(
        lambda: Run.objects.filter(id__in=ids, status__in=FINAL).count() == len(ids),
        timeout=90,
        what="every run to end",
    )
    first = dict(Run.objects.filter(id__in=ids).values_list("id", "status"))
    time.sleep(3.0)  # a late write of a stopped attempt would land in this window
    assert dict(Run.objects.filter(id__in=ids).values_list("id", "status")) == first
    assert set(first.values()) <= {"CANCELED", "COMPLETED"}
    started = {v[0] for v in events.values("start:cq")}
    never_started = [
        run_id
        for run_id, before in seen_before_cancel.items()
        if before in ("DELAYED", "QUEUED", "PENDING_VERSION") and first[run_id] == "CANCELED"
    ]
    assert never_started, "no run was canceled while it waited"
    # A run canceled while it waited never executes: no attempt, no start of its code.
    assert not Attempt.objects.filter(run_id__in=never_started).exclude(status="CANCELED").exists()
    assert not started & set(never_started)


def test_a_warm_shutdown_lets_executing_runs_finish_and_none_crash(own):
    worker = own.worker(concurrency=2)
    own.beat()
    handles = [tasks.trigger("steady", {"n": i, "seconds": 2.0}) for i in range(6)]
    wait_for(
        lambda: Run.objects.filter(id__in=[h.id for h in handles], status="EXECUTING").count() == 2,
        what="two runs to execute",
    )
    worker.proc.send_signal(signal.SIGTERM)  # Celery's warm shutdown
    wait_for(lambda: not worker.alive(), timeout=60, what="the worker to shut down")
    assert "warm shutdown" in worker.log().lower()
    own.worker(concurrency=2)
    for handle in handles:
        run = finished(handle, timeout=90)
        assert run.status == "COMPLETED"
        assert "CRASHED" not in [a.status for a in run.attempts]


def test_delayed_runs_longer_than_the_visibility_timeout_each_run_exactly_once(own):
    # Redis redelivers an unacked message after the visibility timeout (3 s here). A
    # delayed run waits in the database, not as a message with an ETA, so a delay longer
    # than the timeout cannot make it run twice.
    own.worker(concurrency=3, env={"TC_VISIBILITY_TIMEOUT": "3"})
    own.beat()
    delayed = [tasks.trigger("echo", {"i": i}, delay="8s") for i in range(5)]
    for handle in delayed:
        run = finished(handle, timeout=120)
        assert run.status == "COMPLETED"
        assert [a.number for a in run.attempts] == [1]
        assert events.values(f"echo:{handle.id}") == [1]
    time.sleep(4.0)  # one more visibility timeout: a redelivered copy would run now
    assert all(events.values(f"echo:{h.id}") == [1] for h in delayed)
