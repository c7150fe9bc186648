"""A trigger whose queue has room takes its slot before its row exists (one INSERT,
written DEQUEUED); the slot is never lost, doubled, nor taken ahead of a waiting run."""

from __future__ import annotations

import time

import pytest
from celery import current_app
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from trigger_celery import tasks
from trigger_celery.coordination import Entry
from trigger_celery.coordination.factory import get_store
from trigger_celery.engine import recovery, triggering
from trigger_celery.models import Run
from trigger_celery.worker.attempt import execute

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_store")]


def held_attempt(run_id: str) -> int | None:
    """The attempt the store holds ``run_id``'s slot for, None when it holds none."""
    store = get_store()
    if run_id not in store.holding_run_ids():
        return None
    for attempt in (1, 2, 3):
        if store.heartbeat(run_id, None, 30, attempt=attempt):
            return attempt
    raise AssertionError(f"{run_id} holds a slot for no attempt 1-3")


def test_a_trigger_with_room_is_written_dispatched_and_holds_its_slot(own):
    tasks.trigger("quiet", {"warm": True})  # the flushed store gets its limits back
    with CaptureQueriesContext(connection) as written:
        handle = tasks.trigger("quiet", {"i": 1})
    assert [q["sql"].split()[0] for q in written.captured_queries] == ["INSERT"]
    run = Run.objects.get(id=handle.id)
    assert (run.status, run.attempt_count) == ("DEQUEUED", 0)
    assert held_attempt(run.id) == 1
    assert run.id not in get_store().queued_run_ids()
    current_app.control.purge()  # no worker here: this process runs the attempt
    assert execute(run.id, 1, worker="test") == "Completed"
    assert Run.objects.get(id=run.id).status == "COMPLETED"
    assert held_attempt(run.id) is None


def test_a_full_queue_keeps_its_order(own):
    first = tasks.trigger("shared-a", {"tag": "order", "seconds": 0})
    second = tasks.trigger("shared-b", {"tag": "order", "seconds": 0})
    third = tasks.trigger("shared-a", {"tag": "order", "seconds": 0})
    status = dict(Run.objects.values_list("id", "status"))
    assert [status[h.id] for h in (first, second, third)] == ["DEQUEUED", "QUEUED", "QUEUED"]
    current_app.control.purge()
    assert execute(first.id, 1, worker="test") == "Completed"  # frees the slot
    status = dict(Run.objects.values_list("id", "status"))
    assert [status[h.id] for h in (second, third)] == ["DEQUEUED", "QUEUED"]
    # A new trigger does not jump the run still waiting.
    assert execute(second.id, 1, worker="test") == "Completed"
    fourth = tasks.trigger("shared-b", {"tag": "order", "seconds": 0})
    status = dict(Run.objects.values_list("id", "status"))
    assert [status[h.id] for h in (third, fourth)] == ["DEQUEUED", "QUEUED"]
    current_app.control.purge()


def test_a_negative_priority_waits_its_turn_in_an_idle_queue_too(own):
    """SPEC 4: runs start in order of queued time minus priority, so a priority of -30
    is a place 30 s in the future, whether or not the queue is busy."""
    tasks.trigger("quiet", {"warm": True})
    current_app.control.purge()
    handle = tasks.trigger("quiet", {"i": 2}, priority=-30)
    run = Run.objects.get(id=handle.id)
    assert (run.status, held_attempt(run.id)) == ("QUEUED", None)
    assert run.id in get_store().queued_run_ids()
    assert get_store().claim(None, max_count=10, lease_seconds=30) == []  # not its turn yet
    current_app.control.purge()


def test_a_slot_claimed_for_a_row_not_written_yet_is_kept_by_reconcile_and_reaped_later(own):
    tasks.trigger("quiet", {"warm": True})  # limits in the store
    store = get_store()
    claim = store.claim_new(Entry("run_not_written", "quiet", 0.0, None, 1), None, lease_seconds=30)
    assert claim is not None
    recovery.reconcile(full=True)
    assert "run_not_written" in store.holding_run_ids()  # the trigger may still write it
    assert recovery.reap_expired_leases(now=store.time() + 31) >= 1
    assert "run_not_written" not in store.holding_run_ids()
    current_app.control.purge()


def test_a_row_that_could_not_be_written_gives_its_slot_back(own, monkeypatch):
    tasks.trigger("shared-a", {"tag": "fail", "seconds": 0})
    current_app.control.purge()
    [warm] = Run.objects.all()
    assert execute(warm.id, 1, worker="test") == "Completed"
    held_before = get_store().holding_run_ids()

    def failing_insert(run):  # type: ignore[no-untyped-def]
        assert run.id in get_store().holding_run_ids()  # the slot was claimed first
        raise DatabaseError("the INSERT failed")

    monkeypatch.setattr(triggering, "insert_row", failing_insert)
    with pytest.raises(DatabaseError):
        tasks.trigger("shared-a", {"tag": "fail", "seconds": 0})
    assert get_store().holding_run_ids() == held_before
    monkeypatch.undo()
    after = tasks.trigger("shared-b", {"tag": "fail", "seconds": 0})
    assert Run.objects.get(id=after.id).status == "DEQUEUED"  # the queue's slot is free
    current_app.control.purge()


def test_a_row_written_after_its_lease_could_have_ended_is_queued_again(own, settings, monkeypatch):
    tasks.trigger("quiet", {"warm": True})
    current_app.control.purge()
    settings.TRIGGER_CELERY = {**settings.TRIGGER_CELERY, "LEASE_SECONDS": 0.2}
    write = triggering.insert_row
    reaped = []

    def slow_insert(run):  # type: ignore[no-untyped-def]
        time.sleep(0.15)  # longer than half the lease
        reaped.append(get_store().release(run.id))  # as the reaper would, finding no row
        write(run)

    monkeypatch.setattr(triggering, "insert_row", slow_insert)
    handle = tasks.trigger("quiet", {"i": 1})
    assert reaped == [True]
    run = Run.objects.get(id=handle.id)
    # Back in its queue and dispatched again: it holds a slot anew, for attempt 1.
    assert (run.status, run.attempt_count) == ("DEQUEUED", 0)
    assert held_attempt(run.id) == 1
    current_app.control.purge()


def test_a_queue_that_had_no_room_is_not_asked_again_at_once(own):
    first = tasks.trigger("shared-a", {"tag": "full", "seconds": 0})
    asked = []
    store = get_store()
    ask = store.claim_new

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        asked.append(args[0].run_id)
        return ask(*args, **kwargs)

    store.claim_new = counting  # type: ignore[method-assign]
    try:
        waiting = [tasks.trigger("shared-b", {"tag": "full", "seconds": 0}) for _ in range(3)]
    finally:
        del store.claim_new
    assert asked == [waiting[0].id]  # the no is remembered for the next two
    status = dict(Run.objects.values_list("id", "status"))
    assert [status[h.id] for h in (first, *waiting)] == ["DEQUEUED"] + ["QUEUED"] * 3
    current_app.control.purge()


def test_an_idempotent_trigger_that_loses_its_race_gives_the_slot_back(own, monkeypatch):
    first = tasks.trigger("shared-a", {"tag": "key", "seconds": 0}, idempotency_key="k")
    current_app.control.purge()
    assert execute(first.id, 1, worker="test") == "Completed"  # the queue is free again
    # Both lookups miss (before the key's lock and under it), as when a process that
    # takes no lock wrote the key just after they looked: the INSERT loses.
    monkeypatch.setattr(triggering, "find_cached", _miss(triggering.find_cached, times=2))
    again = tasks.trigger("shared-a", {"tag": "key", "seconds": 0}, idempotency_key="k")
    assert again.is_cached and again.id == first.id
    assert Run.objects.count() == 1
    assert get_store().holding_run_ids() == set()  # the slot it took first is back
    with CaptureQueriesContext(connection) as written:
        fresh = tasks.trigger("shared-b", {"tag": "key", "seconds": 0}, idempotency_key="k2")
    # Written DEQUEUED in the trigger's own transaction: no dequeue UPDATE after it.
    assert [q["sql"] for q in written.captured_queries if q["sql"].startswith("UPDATE")] == []
    assert Run.objects.get(id=fresh.id).status == "DEQUEUED"
    assert held_attempt(fresh.id) == 1
    current_app.control.purge()


def _miss(find, *, times: int):  # type: ignore[no-untyped-def]
    calls = []

    def lookup(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return None if len(calls) <= times else find(*args, **kwargs)

    return lookup
