"""Runs under the worker pools other than prefork (threads, solo): what a stop can and
cannot do there (SPEC 6 ``max_duration``, ``runs.cancel``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.integration.harness import finished, wait_for
from tests.taskapp import events
from trigger_celery import queues, runs, tasks
from trigger_celery.models import Run

pytestmark = pytest.mark.integration


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket a run connects to and reads from: it waits until the test writes."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(60)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_a_run_stuck_in_one_call_past_its_max_duration_is_timed_out_and_keeps_its_slot(
    own, listener, pool
):
    """A thread cannot be stopped inside a blocking call, and outside prefork there is
    no child process to end: the run is TIMED_OUT anyway once it ignored its stop, its
    slot stays held while its code still runs, and comes back when the code returns."""
    own.worker(pool=pool, concurrency=2)
    own.beat()
    port = listener.getsockname()[1]
    handle = tasks.trigger("blocked-in-one-call", {"port": port}, max_duration=5)
    conn, _ = listener.accept()
    with conn:
        wait_for(lambda: events.values(f"blocked:{handle.id}"), what="the run to block")
        run = finished(handle, timeout=45)  # its code still waits on the socket
        assert run.status == "TIMED_OUT"
        assert run.error["code"] == "MAX_DURATION_EXCEEDED"
        assert [a.status for a in run.attempts] == ["FAILED"]
        # Its code still runs: the limit-1 queue's slot is still its.
        assert queues.retrieve("blocked-1").executing == 1
        after = tasks.trigger("after-blocked", {})
        assert events.values(f"unblocked:{handle.id}") == []
        conn.sendall(b"x")
        assert finished(after, timeout=45).status == "COMPLETED"
    wait_for(lambda: events.values(f"blocked-ended:{handle.id}"), what="on_failure")
    assert events.values(f"blocked-ended:{handle.id}") == [1]  # once, when the code returned
    again = finished(handle)
    assert again.status == "TIMED_OUT" and again.attempt_count == 1


@pytest.mark.parametrize("stop", ["max_duration", "cancel"])
def test_a_prefork_run_stuck_in_one_call_is_woken_by_its_stop_and_gets_its_hooks(
    own, listener, stop
):
    """In a prefork child the attempt runs in the main thread, which a signal wakes from
    a blocking call: the stop is raised there, and the run ends with its hooks
    (on_failure for TIMED_OUT, as README says), its process kept. Before, the process was
    ended after the hard grace, and no on_failure ran."""
    worker = own.worker(pool="prefork", concurrency=2)
    own.beat()
    port = listener.getsockname()[1]
    options = {"max_duration": 5} if stop == "max_duration" else {}
    handle = tasks.trigger("blocked-in-one-call", {"port": port}, **options)
    conn, _ = listener.accept()
    with conn:
        wait_for(lambda: events.values(f"blocked:{handle.id}"), what="the run to block")
        if stop == "cancel":
            runs.cancel(handle)
        run = finished(handle, timeout=45)
        assert run.status == ("TIMED_OUT" if stop == "max_duration" else "CANCELED")
        if stop == "max_duration":
            wait_for(lambda: events.values(f"blocked-ended:{handle.id}"), what="on_failure")
        # The slot came back with the code stopped, before any byte was written.
        assert finished(tasks.trigger("after-blocked", {}), timeout=30).status == "COMPLETED"
    assert events.values(f"unblocked:{handle.id}") == []
    assert "ignored its stop" not in worker.log()


def test_a_timed_out_run_whose_code_still_runs_holds_its_slot_again_after_a_flush(
    own, listener, redis_url
):
    """The store is flushed while a TIMED_OUT run's code is still stuck on a threads
    worker: its worker holds the slot again (the restore from the rows adopts only
    running runs), so the limit-1 queue starts nothing else until that code returns."""
    import redis

    own.worker(pool="threads", concurrency=2)
    own.beat()
    port = listener.getsockname()[1]
    handle = tasks.trigger("blocked-in-one-call", {"port": port}, max_duration=5)
    conn, _ = listener.accept()
    with conn:
        wait_for(lambda: events.values(f"blocked:{handle.id}"), what="the run to block")
        assert finished(handle, timeout=45).status == "TIMED_OUT"
        pipe = redis.Redis.from_url(redis_url).pipeline(transaction=True)
        pipe.flushdb()
        pipe.dbsize()
        assert pipe.execute() == [True, 0]  # the fault happened
        wait_for(
            lambda: queues.retrieve("blocked-1").executing == 1,
            what="the stuck run's worker to hold its slot again",
        )
        after = tasks.trigger("after-blocked", {})
        time.sleep(2)  # a start would come at once; none may while the code runs
        assert runs.retrieve(after).status == "QUEUED"
        conn.sendall(b"x")
        assert finished(after, timeout=45).status == "COMPLETED"
    wait_for(lambda: events.values(f"blocked-ended:{handle.id}"), what="on_failure")


def test_a_gevent_worker_reserves_runs_and_stops_a_canceled_one_where_it_waits(own, listener):
    """Under ``-P gevent`` Celery counts busy greenlets as its processes, so the
    prefetch limit the worker turns on elsewhere would let it reserve nothing; and a
    stop is thrown into the attempt's greenlet (a patched socket read gives way at once),
    so the limit-1 queue's slot comes back without the run's code returning."""
    worker = own.worker(pool="gevent", concurrency=10)
    own.beat()
    assert finished(tasks.trigger("echo", {}), timeout=30).status == "COMPLETED"
    assert "reserved only for free processes" not in worker.log()  # left off
    port = listener.getsockname()[1]
    canceled = tasks.trigger("blocked-in-one-call", {"port": port})
    conn, _ = listener.accept()
    with conn:
        wait_for(lambda: events.values(f"blocked:{canceled.id}"), what="the run to block")
        runs.cancel(canceled)
        assert finished(tasks.trigger("after-blocked", {}), timeout=30).status == "COMPLETED"
        timed_out = tasks.trigger("blocked-in-one-call", {"port": port}, max_duration=5)
        second, _ = listener.accept()
        with second:
            assert finished(timed_out, timeout=30).status == "TIMED_OUT"
            assert finished(tasks.trigger("after-blocked", {}), timeout=30).status == "COMPLETED"
    assert runs.retrieve(canceled).status == "CANCELED"
    assert events.values(f"unblocked:{canceled.id}") == []  # stopped, never returned
    assert events.values(f"unblocked:{timed_out.id}") == []
    wait_for(lambda: events.values(f"blocked-ended:{timed_out.id}"), what="on_failure")
    assert "ignored its stop" not in worker.log()


@pytest.mark.parametrize("task_id", ["stubborn", "stubborn-failing-cleanup"])
def test_celerys_hard_time_limit_crashes_the_attempt_instead_of_failing_it_as_sys_exit(
    own, task_id
):
    """``task_time_limit`` set for the whole project ends a prefork child with SIGTERM,
    whose handler raises ``SystemExit`` in the run: that is the process on its way out
    (check W012: a crash once the lease ends), not the user's ``sys.exit()``, and must not
    be settled as an ordinary error while Celery is about to SIGKILL the process."""
    worker = own.worker(concurrency=2, env={"TC_TASK_TIME_LIMIT": "3"})
    own.beat()
    # (a cleanup hook that raises while the exit unwinds changes nothing)
    handle = tasks.trigger(task_id, {"seconds": 30}, max_attempts=1)
    run = finished(handle, timeout=60)
    assert "Hard time limit (3s) exceeded" in worker.log()
    assert run.status == "CRASHED"
    assert [a.status for a in run.attempts] == ["CRASHED"]
    assert run.error["type"] != "SystemExit"


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_a_canceled_run_stuck_in_one_call_has_its_late_children_canceled_before_it_returns(
    own, listener, pool
):
    """Outside prefork, a canceled run's code that ignores its stop cannot be ended:
    once the monitor gives it up, the children it left after the cancel (a trigger that
    committed before its signal was set; its triggers after that are refused) are
    canceled at once, not when its code returns; its slot stays held until then."""
    worker = own.worker(pool=pool, concurrency=2)
    own.beat()
    handle = tasks.trigger("deaf-to-cancel", {"port": listener.getsockname()[1]})
    wait_for(lambda: events.values(f"started:{handle.id}"), what="the run to start")
    runs.cancel(handle)
    late = tasks.trigger("echo", {"late": True}, delay="1h")
    Run.objects.filter(id=late.id).update(parent_id=handle.id)  # committed after the look
    conn, _ = listener.accept()  # after its stop, it waits on the socket
    with conn:
        late_id = late.id
        assert events.values(f"refused:{handle.id}") != []
        assert finished(late_id, timeout=45).status == "CANCELED"
        # The monitor logs that it gave the attempt up after the cancel commits.
        wait_for(lambda: "this pool cannot end it" in worker.log(), what="the give-up line")
        assert events.values(f"returned:{handle.id}") == []  # its code still runs
        assert queues.retrieve("deaf-1").executing == 1
        after = tasks.trigger("after-deaf", {})
        conn.sendall(b"x")
        assert finished(after, timeout=45).status == "COMPLETED"
    assert events.values(f"returned:{handle.id}") == [1]
    parent = runs.retrieve(handle)
    assert parent.status == "CANCELED"
    assert [a.status for a in parent.attempts] == ["CANCELED"]
