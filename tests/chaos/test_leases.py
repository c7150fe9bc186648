"""A slot and its lease belong to one attempt, from its start to its last write."""

from __future__ import annotations

import os
import signal
import time

from tests.integration.harness import finished, wait_for
from tests.taskapp import events
from trigger_celery import runs, tasks
from trigger_celery.models import LogEntry


def test_a_slow_on_success_hook_keeps_the_lease_and_runs_once(live):
    # on_success sleeps 6 s; the lease is 4 s. Settling inside the lease means no reaper
    # takes the run for crashed while its hook runs.
    handle = tasks.trigger("slow-on-success", {})
    run = finished(handle, timeout=60)
    assert run.status == "COMPLETED"
    assert run.output == {"big": "x" * 1000}
    assert [(a.number, a.status) for a in run.attempts] == [(1, "COMPLETED")]
    time.sleep(1.0)  # a second on_success would come right after the first
    assert events.values(f"slow-success:{handle.id}") == [1]
    assert not LogEntry.objects.filter(run_id=handle.id, level="ERROR").exists()


def test_an_attempt_that_lost_its_lease_stops_and_writes_nothing(own):
    own.worker(concurrency=2)
    own.beat()
    handle = tasks.trigger("pid-sleeper", {"seconds": 6})
    wait_for(lambda: events.values(f"pid-sleeper:{handle.id}"), what="attempt 1 to start")
    (number, pid), *_ = events.values(f"pid-sleeper:{handle.id}")
    assert number == 1
    os.kill(pid, signal.SIGSTOP)  # a frozen process: no heartbeat, no progress
    try:
        wait_for(
            lambda: len(events.values(f"pid-sleeper:{handle.id}")) == 2,
            timeout=60,
            what="the reaper to start attempt 2",
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    run = finished(handle, timeout=60)
    assert run.status == "COMPLETED"
    assert run.output == {"attempt": 2}
    assert [(a.number, a.status) for a in run.attempts] == [(1, "CRASHED"), (2, "COMPLETED")]
    # Attempt 1 woke up, found its lease gone, and was stopped before its end.
    time.sleep(3.0)
    assert events.values(f"pid-sleeper-done:{handle.id}") == [2]


def test_an_attempt_frozen_past_its_lease_that_ends_on_waking_runs_no_hook(own):
    """Frozen until its run was retried and completed elsewhere, attempt 1 ends the
    moment it wakes, before the monitor's next pass: the row, asked before settling,
    says the run moved on, so its on_success does not run a second time."""
    own.worker(concurrency=2)
    own.beat()
    handle = tasks.trigger("wakes-done", {"seconds": 2})
    wait_for(lambda: events.values(f"wakes-done:{handle.id}"), what="attempt 1 to start")
    (number, pid), *_ = events.values(f"wakes-done:{handle.id}")
    assert number == 1
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: events.values(f"wakes-done-success:{handle.id}") == [2],
            timeout=60,
            what="attempt 2 to complete the run while attempt 1 is frozen",
        )
        assert _state_of(pid) == "T"  # still frozen: the fault held
    finally:
        os.kill(pid, signal.SIGCONT)
    run = finished(handle, timeout=60)
    assert [(a.number, a.status) for a in run.attempts] == [(1, "CRASHED"), (2, "COMPLETED")]
    time.sleep(3.0)  # attempt 1 has woken and ended by now (its sleep was over)
    assert events.values(f"wakes-done-success:{handle.id}") == [2]
    assert runs.retrieve(handle).output == {"attempt": 2}


def _state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def test_a_worker_whose_clock_is_30s_behind_keeps_its_leases(own):
    # Leases are measured by the store's clock (Redis TIME, the database's), not by the
    # clocks of the worker that renews them and the beat that reaps them.
    worker = own.worker(concurrency=2, env={"TC_CLOCK_SKEW": "-30"})
    own.beat()
    skews = [
        v
        for key in events.client().keys("tc-test:clock-skew:*")
        for v in events.values(key.removeprefix("tc-test:"))
    ]
    assert skews and all(-31 < s < -29 for s in skews), skews  # the fault is in place
    handles = [tasks.trigger("steady", {"n": i, "seconds": 8.0}) for i in range(2)]
    for handle in handles:
        run = finished(handle, timeout=60)
        assert run.status == "COMPLETED"
        assert [a.status for a in run.attempts] == ["COMPLETED"], worker.log()[-3000:]
        assert events.values(f"steady-start:{handle.id}") == [1]
