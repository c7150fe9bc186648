"""Leases, crash recovery and reconciliation (SPEC 4, 6): nothing triggered is lost."""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from datetime import timedelta

import pytest
import redis
from celery import current_app
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError

from tests.integration.harness import child_pids, finished, max_overlap, wait_for
from tests.taskapp import events
from trigger_celery import runs, tasks
from trigger_celery.coordination import Entry
from trigger_celery.coordination.factory import get_store
from trigger_celery.core import clock
from trigger_celery.core.statuses import FINAL_STATUSES
from trigger_celery.engine import actions, recovery
from trigger_celery.models import Attempt, Run

pytestmark = pytest.mark.integration
FINAL = [s.value for s in FINAL_STATUSES]


def test_a_run_whose_worker_process_is_killed_is_retried_and_completes(live):
    handle = tasks.trigger("dies", {"die_on": [1]})
    run = finished(handle)
    assert run.status == "COMPLETED"
    assert run.output == {"survived_attempt": 2}
    assert [a.status for a in run.attempts] == ["CRASHED", "COMPLETED"]
    assert run.attempts[0].error["code"] == "TASK_PROCESS_CRASHED"
    # The slot came back: the next run of that limit-1 queue starts.
    after = tasks.trigger("after-death", {"tag": "after", "seconds": 0.01})
    assert finished(after).status == "COMPLETED"


def test_a_run_killed_on_its_last_attempt_ends_crashed_and_frees_its_slot(live):
    handle = tasks.trigger("dies", {"die_on": [1, 2]})
    run = finished(handle)
    assert run.status == "CRASHED"
    assert events.values(f"attempts:{handle.id}") == [1, 2]
    assert [a.status for a in run.attempts] == ["CRASHED", "CRASHED"]
    after = tasks.trigger("after-death", {"tag": "after2", "seconds": 0.01})
    assert finished(after).status == "COMPLETED"
    assert handle.id not in get_store().holding_run_ids()


def test_a_thousand_runs_survive_five_worker_kills_without_loss_or_overlap(own):
    workers = [own.worker(concurrency=3), own.worker(concurrency=3)]
    own.beat()
    handles = [
        tasks.trigger("chaos", {"tag": "chaos", "seconds": random.uniform(0.02, 0.06)})
        for _ in range(1000)
    ]
    ids = [h.id for h in handles]
    dead: set[int] = set()
    deadline = time.monotonic() + 60
    while len(dead) < 5 and time.monotonic() < deadline:
        # Kill a pool process while it runs a run (a start with no end yet). The pool is
        # read each time: Celery replaces a killed process when it gets to it.
        pool = {pid for w in workers for pid in child_pids(w)} - dead
        ended = {v[0] for v in events.values("interval:chaos")}
        running = [v for v in events.values("start:chaos") if v[0] not in ended and v[3] in pool]
        if not running:
            time.sleep(0.01)
            continue
        pid = running[-1][3]
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        dead.add(pid)
        time.sleep(0.5)
    assert len(dead) == 5
    wait_for(
        lambda: Run.objects.filter(id__in=ids, status__in=FINAL).count() == 1000,
        timeout=60,
        what="every run to reach a final status after the last kill",
    )
    statuses = dict(Run.objects.filter(id__in=ids).values_list("id", "status"))
    assert len(statuses) == 1000  # nothing lost
    assert set(statuses.values()) == {"COMPLETED"}
    spans = [
        (a.started_at.timestamp(), a.finished_at.timestamp())
        for a in Attempt.objects.filter(run_id__in=ids)
    ]
    assert max_overlap(spans) <= 3
    assert Attempt.objects.filter(run_id__in=ids, status="CRASHED").count() >= 1
    assert not (get_store().holding_run_ids() & set(ids))


def test_flushed_store_is_rebuilt_from_the_database(own):
    own.worker(concurrency=2)
    handles = [tasks.trigger("after-death", {"tag": "flush", "seconds": 0.05}) for _ in range(10)]
    # A limit-1 queue: one run was dispatched, nine wait in the store. Lose the store.
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    assert get_store().queued_run_ids() == set()
    own.beat()  # its periodic reconciler rebuilds the queue from the rows
    for handle in handles:
        assert finished(handle, timeout=60).status == "COMPLETED"
    assert max_overlap([(v[2], v[3]) for v in events.values("interval:flush")]) == 1


def test_trigger_reconcile_command_requeues_runs_on_demand(own):
    handles = [tasks.trigger("after-death", {"tag": "cmd", "seconds": 0.01}) for _ in range(3)]
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    call_command("trigger_reconcile", verbosity=0)
    assert get_store().queued_run_ids() | get_store().holding_run_ids() >= {
        h.id for h in handles[1:]
    }
    own.worker(concurrency=1)
    own.beat()
    for handle in handles:
        assert finished(handle).status == "COMPLETED"


def test_a_store_outage_logs_a_line_per_failure_not_a_traceback(transactional_db, settings, caplog):
    """Redis down: the trigger still returns its handle (the row is committed and
    reconcile queues it later), and the trigger and the pump each say so in one line."""
    from trigger_celery.coordination import outages
    from trigger_celery.coordination.factory import reset_store_cache
    from trigger_celery.engine.pump import Pump

    settings.TRIGGER_CELERY = {**settings.TRIGGER_CELERY, "REDIS_URL": "redis://127.0.0.1:1/0"}
    reset_store_cache()
    try:
        with pytest.raises(redis.exceptions.ConnectionError):  # the fault is real
            get_store().time()
        caplog.clear()
        outages.forget()  # an earlier test in this process may have said the same lines
        handle = tasks.trigger("hello-world", {"message": "in the outage"})
        Pump().tick()
    finally:
        reset_store_cache()
    assert Run.objects.get(id=handle.id).status == "QUEUED"
    ours = [r for r in caplog.records if r.name.startswith("trigger_celery")]
    said = [r.getMessage() for r in ours if "the store is unreachable" in r.getMessage()]
    assert any(m.startswith("could not enqueue 1 run(s) now") for m in said), said
    assert any(m.startswith("trigger_celery pump pass failed") for m in said), said
    assert [r for r in ours if r.exc_info] == []


def test_trigger_reconcile_with_redis_down_names_the_store_it_cannot_reach(
    transactional_db, settings
):
    """It ended in a raw redis ConnectionError traceback."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.TRIGGER_CELERY = {
        **settings.TRIGGER_CELERY,
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
    }
    with pytest.raises(CommandError, match=f"127.0.0.1:{port}.*REDIS_URL"):
        call_command("trigger_reconcile", verbosity=0)


def test_a_resumed_attempt_whose_lease_ran_out_in_a_prefetch_buffer_is_adopted(own):
    """A parent resumed after a wait starts its attempt again (``resumed_at``). If its
    lease ran out while the message sat in a worker's prefetch buffer and it started just
    now, the reaper adopts its lease, as for a first start: its heartbeat is on the way.
    The attempt's first start, an hour ago, must not make it look crashed."""
    handle = tasks.trigger("quiet", {"i": 1})
    current_app.control.purge()
    now = clock.now()
    Run.objects.filter(id=handle.id).update(status="EXECUTING", attempt_count=1, started_at=now)
    Attempt.objects.create(
        run_id=handle.id,
        number=1,
        status="EXECUTING",
        worker="w",
        started_at=now - timedelta(hours=1),
        resumed_at=now,
    )
    store = get_store()
    store.release(handle.id)
    assert store.claim_new(Entry(handle.id, "quiet", 0.0, None, 1), None, lease_seconds=30)

    # It resumed just now: right before the reap, whatever the load on this machine.
    Attempt.objects.filter(run_id=handle.id).update(resumed_at=clock.now())
    assert recovery.reap_expired_leases(now=store.time() + 31) >= 1
    run = Run.objects.get(id=handle.id)
    assert (run.status, run.attempt_count) == ("EXECUTING", 1)
    assert list(Attempt.objects.filter(run_id=handle.id).values_list("status", flat=True)) == [
        "EXECUTING"
    ]
    assert handle.id in store.holding_run_ids()


def test_a_canceled_run_that_ignores_its_stop_until_its_process_ends_leaves_no_child_behind(
    live,
):
    """``runs.cancel`` cancels the children it finds; a child whose trigger committed
    after that look but before the run's signal was set is late. The run ignores its
    stop (its own trigger after it is refused) until the monitor ends its pool process.
    No settle follows for that attempt, so what it left behind is canceled by what ends
    it: the run is CANCELED with its attempt closed, the late child is canceled, and the
    limit-1 queue's slot comes back."""
    handle = tasks.trigger("deaf-to-cancel", {})
    wait_for(lambda: events.values(f"started:{handle.id}"), what="the run to start")
    assert runs.cancel(handle).status == "CANCELED"
    late_id = _late_child_of(handle.id)
    [refused] = wait_for(
        lambda: events.values(f"refused:{handle.id}"), what="its trigger after the stop"
    )
    assert f"run {handle.id} was canceled" in refused
    assert events.values(f"stopped:{handle.id}") == ["RunCanceledError"]
    child = finished(late_id, timeout=45)  # the process is ended after its hard grace
    assert child.status == "CANCELED"
    assert child.parent_id == handle.id and child.attempts == []
    assert "ignored its stop" in live.procs["worker"].log()
    assert list(Run.objects.filter(parent_id=handle.id).values_list("id", flat=True)) == [late_id]
    parent = runs.retrieve(handle)
    assert parent.status == "CANCELED"
    assert [(a.status, a.finished_at is not None) for a in parent.attempts] == [("CANCELED", True)]
    ids = [handle.id, late_id]
    assert not Run.objects.filter(id__in=ids).exclude(status__in=FINAL).exists()
    assert not Attempt.objects.filter(run_id__in=ids, finished_at__isnull=True).exists()
    # Its slot came back: the next run of the limit-1 queue starts.
    assert finished(tasks.trigger("after-deaf", {})).status == "COMPLETED"
    assert handle.id not in get_store().holding_run_ids()


def test_a_canceled_run_whose_worker_dies_in_its_grace_period_leaves_no_child_behind(own):
    """The worker dies (SIGKILL of every process) while a canceled run that ignores its
    stop is in its grace period, after it triggered a child: neither its settle nor its
    monitor comes, so the reaper, when the lease on the canceled run ends, cancels the
    late child before it frees the slot."""
    worker = own.worker(concurrency=2)
    own.beat()
    handle = tasks.trigger("deaf-to-cancel", {"kill_worker": True})
    wait_for(lambda: events.values(f"started:{handle.id}"), what="the run to start")
    runs.cancel(handle)
    late_id = _late_child_of(handle.id)
    wait_for(lambda: events.values(f"refused:{handle.id}"), what="its trigger after the stop")
    wait_for(lambda: not worker.alive(), what="the worker to die")
    assert "ignored its stop" not in worker.log()  # its monitor never got there
    assert finished(late_id).status == "CANCELED"
    assert runs.retrieve(handle).status == "CANCELED"
    own.worker(concurrency=2)
    assert finished(tasks.trigger("after-deaf", {})).status == "COMPLETED"
    assert handle.id not in get_store().holding_run_ids()


def _late_child_of(run_id: str) -> str:
    """A child of ``run_id`` written after ``runs.cancel`` looked for its children: what
    a trigger that committed before the run's signal was set leaves behind (once the
    signal says canceled, the run's own triggers are refused)."""
    late = tasks.trigger("echo", {"late": True}, delay="1h")
    Run.objects.filter(id=late.id).update(parent_id=run_id)
    return late.id


def test_a_failed_cancel_of_late_children_keeps_that_lease_and_the_pass_goes_on(own, monkeypatch):
    """The reaper cancels what a dead canceled attempt triggered late before it releases
    that attempt's lease. A failure there (the database, say) keeps the lease for the
    next pass, and this pass goes on with the other expired leases."""
    canceled = tasks.trigger("quiet", {"i": 1})
    late = tasks.trigger("quiet", {"i": 2}, delay="1h")
    crashed = tasks.trigger("quiet", {"i": 3})
    current_app.control.purge()
    Run.objects.filter(id=canceled.id).update(status="CANCELED", attempt_count=1)
    Run.objects.filter(id=late.id).update(parent_id=canceled.id)
    Run.objects.filter(id=crashed.id).update(status="EXECUTING", attempt_count=1)
    Attempt.objects.create(
        run_id=crashed.id,
        number=1,
        status="EXECUTING",
        worker="w",
        started_at=clock.now() - timedelta(hours=1),
    )
    store = get_store()
    for handle in (canceled, crashed):
        store.release(handle.id)
        assert store.claim_new(Entry(handle.id, "quiet", 0.0, None, 1), None, lease_seconds=30)

    def database_gone(run_id: str) -> int:
        raise OperationalError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(actions, "cancel_late_children", database_gone)
        recovery.reap_expired_leases(now=store.time() + 31)
    assert canceled.id in store.holding_run_ids()  # kept for the next pass
    assert Run.objects.get(id=late.id).status == "DELAYED"
    attempts = Attempt.objects.filter(run_id=crashed.id).values_list("status", flat=True)
    assert list(attempts) == ["CRASHED"]  # the pass went on past the failure

    recovery.reap_expired_leases(now=store.time() + 31)
    assert canceled.id not in store.holding_run_ids()
    assert Run.objects.get(id=late.id).status == "CANCELED"
    current_app.control.purge()
