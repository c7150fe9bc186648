"""Trigger options and run actions: delay, ttl, idempotency, max_duration, cancel,
replay and payload sizes (SPEC 5, 6), with real workers."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from celery import current_app
from django.db import connection, connections

from tests.integration.harness import finished, wait_for
from tests.taskapp import events
from trigger_celery import idempotency_keys, runs, tasks
from trigger_celery.coordination.factory import get_store
from trigger_celery.engine import recovery, transitions
from trigger_celery.engine.registry import registry
from trigger_celery.errors import InvalidRunStateError, PayloadTooLargeError
from trigger_celery.models import LogEntry, Run
from trigger_celery.worker.attempt import build_context, execute
from trigger_celery.worker.monitor import AttemptMonitor, Watched

pytestmark = pytest.mark.integration


# -- delay and ttl ------------------------------------------------------------------------


def test_a_3s_delay_runs_3s_later(live):
    before = datetime.now(UTC)
    handle = tasks.trigger("echo", {"n": 1}, delay="3s")
    after = datetime.now(UTC)
    run = runs.retrieve(handle)
    assert run.status == "DELAYED" and run.is_queued
    # Due 3 s after the trigger call, read from the row (no timing of the machine).
    assert before + timedelta(seconds=3) <= run.delayed_until <= after + timedelta(seconds=3)
    run = finished(handle)
    assert run.status == "COMPLETED"
    assert run.started_at >= run.delayed_until  # not a moment early


def test_delay_in_the_past_means_no_delay(live):
    handle = tasks.trigger("echo", {}, delay=datetime(2020, 1, 1, tzinfo=UTC))
    assert finished(handle).status == "COMPLETED"


def test_reschedule_moves_a_delayed_run_and_refuses_other_statuses(live):
    handle = tasks.trigger("echo", {}, delay="1h")
    run = runs.reschedule(handle, delay="1s")
    assert run.delayed_until < datetime.now(UTC) + timedelta(seconds=5)
    done = finished(handle)
    assert done.status == "COMPLETED"
    with pytest.raises(InvalidRunStateError, match="COMPLETED"):
        runs.reschedule(handle, delay="1h")


def test_ttl_expires_a_run_that_could_not_start_in_time(live):
    from trigger_celery import queues

    queues.pause("shared-1")
    try:
        handle = tasks.trigger("shared-a", {"tag": "ttl"}, ttl="1s")
        run = wait_for(
            lambda: (r := runs.retrieve(handle)).status == "EXPIRED" and r, what="expiry"
        )
    finally:
        queues.resume("shared-1")
    assert run.is_failed and run.expired_at is not None and run.attempt_count == 0
    assert events.values("start:ttl") == []


def test_runs_behind_a_busy_queue_expire_and_never_execute(live):
    blocker = tasks.trigger("shared-a", {"tag": "busy", "seconds": 2.5})
    wait_for(lambda: events.values("start:busy"), what="the blocker to start")
    waiting = [
        tasks.trigger("shared-b", {"tag": "ttl30", "seconds": 0.05}, ttl="1s") for _ in range(30)
    ]
    finished(blocker)
    ids = [h.id for h in waiting]
    wait_for(
        lambda: Run.objects.filter(id__in=ids, status__in=["EXPIRED", "COMPLETED"]).count() == 30,
        what="all 30 to expire or complete",
    )
    expired = set(Run.objects.filter(id__in=ids, status="EXPIRED").values_list("id", flat=True))
    assert expired  # some could not start within their ttl
    executed = {v[0] for v in events.values("start:ttl30")}
    assert not (expired & executed)
    assert Run.objects.filter(id__in=list(expired), attempt_count__gt=0).count() == 0


def test_a_run_whose_message_reaches_a_worker_after_its_ttl_expires_unexecuted(fresh_store):
    """Dispatched in time, started too late (its message waited in the broker): it
    expires instead of running, and its start leaves no trace (SPEC 5)."""
    handle = tasks.trigger("shared-a", {"tag": "late-start"}, ttl="1s")
    current_app.control.purge()  # no worker: this process takes the message's place
    assert Run.objects.get(id=handle.id).status == "DEQUEUED"
    time.sleep(1.1)  # the ttl must pass; there is nothing to poll
    assert execute(handle.id, 1, worker="test") == "EXPIRED"
    run = Run.objects.get(id=handle.id)
    assert run.status == "EXPIRED" and run.attempt_count == 0 and run.started_at is None
    assert not run.attempts.exists()
    assert events.values("start:late-start") == []
    assert get_store().holding_run_ids() == set()  # its slot went back
    assert execute(handle.id, 1, worker="test") == "stale"  # a copy of the message


@pytest.mark.skipif(connection.vendor != "postgresql", reason="kills a PostgreSQL backend")
def test_a_start_on_a_connection_the_server_closed_while_idle_connects_again(fresh_store):
    import psycopg

    handle = tasks.trigger("echo", {"n": 1})
    current_app.control.purge()  # no worker: this process takes the message's place
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
        active = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
        wait_for(lambda: other.execute(active, [pid]).fetchone()[0] == 0, what="its end")
    assert execute(handle.id, 1, worker="test") == "Completed"
    assert Run.objects.get(id=handle.id).status == "COMPLETED"


def test_ttl_counts_from_the_end_of_the_delay(live):
    handle = tasks.trigger("echo", {}, delay="2s", ttl="1s")
    assert finished(handle).status == "COMPLETED"


# -- idempotency ---------------------------------------------------------------------------


def test_second_trigger_with_same_idempotency_key_returns_the_first_run(live):
    first = tasks.trigger("echo", {"n": 1}, idempotency_key="order-42")
    second = tasks.trigger("echo", {"n": 2}, idempotency_key="order-42")
    assert not first.is_cached and second.is_cached
    assert second.id == first.id
    assert finished(first).status == "COMPLETED"
    third = tasks.trigger("echo", {"n": 3}, idempotency_key="order-42")
    assert third.is_cached and third.id == first.id  # completed runs keep their key
    other_task = tasks.trigger("hello-world", {"message": "x"}, idempotency_key="order-42")
    assert other_task.id != first.id  # keys are per task


def test_failed_run_releases_its_idempotency_key(live):
    first = tasks.trigger("always-fails", {}, idempotency_key="retry-me", max_attempts=1)
    assert finished(first).status == "FAILED"
    second = tasks.trigger("always-fails", {}, idempotency_key="retry-me", max_attempts=1)
    assert not second.is_cached and second.id != first.id


def test_idempotency_key_ttl_expires_the_key(live):
    first = tasks.trigger("echo", {}, idempotency_key="short", idempotency_key_ttl=1)
    time.sleep(1.2)  # the key's own ttl must pass; there is nothing to poll
    second = tasks.trigger("echo", {}, idempotency_key="short", idempotency_key_ttl=1)
    assert second.id != first.id and not second.is_cached


def test_fifty_concurrent_triggers_with_one_key_make_one_run(live):
    handles, errors = [], []
    barrier = threading.Barrier(50)

    def trigger():
        try:
            barrier.wait()
            handles.append(tasks.trigger("echo", {}, idempotency_key="stampede"))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=trigger) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len({h.id for h in handles}) == 1
    assert sum(not h.is_cached for h in handles) == 1
    assert Run.objects.filter(task_identifier="echo").count() == 1


def test_idempotency_key_over_2048_characters_is_refused(live):
    with pytest.raises(ValueError, match="2049"):
        tasks.trigger("echo", {}, idempotency_key="k" * 2049)


def test_scoped_keys_outside_a_run_are_global():
    assert idempotency_keys.create("a", scope="run") == idempotency_keys.create("a", scope="global")
    with pytest.raises(ValueError, match="'forever'"):
        idempotency_keys.create("a", scope="forever")


# -- max_duration, cancel, replay -----------------------------------------------------


def test_max_duration_stops_the_attempt_and_times_the_run_out_without_retry(live):
    handle = tasks.trigger("stubborn", {"seconds": 30}, max_duration=5)
    run = finished(handle, timeout=30)
    assert run.status == "TIMED_OUT"
    assert run.error["code"] == "MAX_DURATION_EXCEEDED"
    assert run.attempt_count == 1
    assert events.values(f"finished:{handle.id}") == []


def test_a_timed_out_run_gets_its_failure_hooks(live):
    """TIMED_OUT is a failure after all retries (none are made): on_failure and
    on_complete run (SPEC 3 leaves out only CRASHED, SYSTEM_FAILURE and CANCELED)."""
    handle = tasks.trigger("cooperative", {}, max_duration=5)
    run = finished(handle, timeout=30)
    assert run.status == "TIMED_OUT"
    assert events.values(f"ended:{handle.id}") == ["on_failure", "on_complete"]


def test_cancel_of_a_queued_run_means_it_never_executes(live):
    from trigger_celery import queues

    queues.pause("shared-1")
    try:
        handle = tasks.trigger("shared-a", {"tag": "canceled"})
        run = runs.cancel(handle)
        assert run.status == "CANCELED" and run.is_canceled
    finally:
        queues.resume("shared-1")
    time.sleep(0.5)  # give a wrongly dispatched run the chance to start
    assert events.values("start:canceled") == []
    assert runs.retrieve(handle).status == "CANCELED"


def test_cancel_of_a_delayed_run(live):
    handle = tasks.trigger("echo", {}, delay="1s")
    assert runs.cancel(handle).status == "CANCELED"
    time.sleep(1.5)
    assert runs.retrieve(handle).status == "CANCELED"
    assert events.values(f"echo:{handle.id}") == []


def test_cancel_of_an_executing_run_signals_it_runs_on_cancel_and_stops_it(live):
    handle = tasks.trigger("cooperative", {"order": 7})
    wait_for(lambda: events.values(f"started:{handle.id}"), what="the run to start")
    run = runs.cancel(handle)
    assert run.status == "CANCELED"
    wait_for(lambda: events.values(f"on_cancel_done:{handle.id}"), what="on_cancel to finish")
    assert events.values(f"on_cancel:{handle.id}") == [True]  # the signal was set first
    assert events.values(f"on_cancel_payload:{handle.id}") == [{"order": 7}]  # like every hook
    said = LogEntry.objects.filter(run_id=handle.id, message="on_cancel says")
    assert [line.attributes for line in said] == [{"stage": "cancel"}]
    assert events.values(f"saw_signal:{handle.id}") == ["canceled"]
    run = runs.retrieve(handle)
    assert run.status == "CANCELED" and run.output is None
    assert run.attempts[0].status == "CANCELED"
    # It stopped by returning, as asked: a canceled run did not succeed (SPEC 3).
    wait_for(lambda: handle.id not in get_store().holding_run_ids(), what="the attempt to end")
    assert events.values(f"ended:{handle.id}") == []


def test_cancel_stops_a_run_that_ignores_the_signal(live):
    handle = tasks.trigger("stubborn", {"seconds": 30})
    wait_for(lambda: events.values(f"started:{handle.id}"), what="the run to start")
    runs.cancel(handle)
    # The slot is released only when the attempt has really ended: long before the
    # 30 s the function would take.
    wait_for(
        lambda: handle.id not in get_store().holding_run_ids(),
        timeout=20,
        what="the attempt to stop",
    )
    assert runs.retrieve(handle).status == "CANCELED"
    assert events.values(f"finished:{handle.id}") == []


def test_a_heartbeat_that_finds_a_canceled_runs_slot_gone_still_stops_it_as_canceled(fresh_store):
    """The monitor's cancel poll and a heartbeat that finds the slot gone (a flushed
    store) may come in either order: the canceled run is stopped as canceled, with its
    ``on_cancel`` hooks, not as an attempt that lost its lease."""
    handle = tasks.trigger("cooperative", {})
    current_app.control.purge()  # no worker: this process holds the attempt
    run = transitions.start_attempt(handle.id, 1, "test")
    assert run is not None
    ctx = build_context(run, 1)
    watched = Watched(
        run_id=run.id,
        attempt=1,
        thread_id=threading.get_ident(),
        ctx=ctx,
        definition=registry.get_task("cooperative"),
        deadline=None,
        queue=run.queue,
    )
    runs.cancel(handle)
    assert get_store().release(run.id)  # the slot is gone before the monitor looks

    def heartbeat() -> None:  # on its own thread and connection, as the monitor's loop
        AttemptMonitor()._heartbeat([watched], 30)
        connections.close_all()

    beat = threading.Thread(target=heartbeat)
    beat.start()
    beat.join()
    assert watched.reason == "canceled" and ctx.signal.reason == "canceled"
    watched.finished.set()  # the run function has returned
    wait_for(lambda: events.values(f"on_cancel_done:{run.id}"), what="on_cancel to finish")
    assert events.values(f"on_cancel:{run.id}") == [True]


def test_reconcile_leaves_a_canceled_run_its_slot_until_its_attempt_has_stopped(fresh_store):
    tasks.trigger("quiet", {"warm": True})  # the flushed store gets its limits back
    handle = tasks.trigger("quiet", {"cancel": True})
    current_app.control.purge()  # no worker: the attempt stays executing
    store = get_store()
    assert handle.id in store.holding_run_ids()
    assert transitions.start_attempt(handle.id, 1, "test") is not None
    assert runs.cancel(handle).status == "CANCELED"
    recovery.reconcile(full=True)
    # Its attempt may still be stopping (on_cancel, the grace): its worker gives the
    # slot back when it has stopped ...
    assert handle.id in store.holding_run_ids()
    # ... or, when that worker is gone, the reaper at the end of the lease.
    assert store.heartbeat(handle.id, None, 30, attempt=1)
    assert recovery.reap_expired_leases(now=store.time() + 31) >= 1
    assert handle.id not in store.holding_run_ids()


def test_cancelling_a_finished_run_is_a_no_op(live):
    handle = tasks.trigger("echo", {})
    assert finished(handle).status == "COMPLETED"
    assert runs.cancel(handle).status == "COMPLETED"


def test_replay_creates_a_new_linked_run_with_the_same_payload_and_options(live):
    original = tasks.trigger("echo", {"n": 7}, tags=["replayed"], idempotency_key="once")
    finished(original)
    replay = runs.replay(original)
    assert replay.id != original.id and not replay.is_cached
    run = finished(replay)
    assert run.replayed_from == original.id
    assert run.payload == {"n": 7}
    assert run.tags == ["replayed"]
    assert run.idempotency_key is None


def test_replay_with_another_payload_as_the_dashboard_offers(live):
    original = tasks.trigger("echo", {"n": 7}, tags=["edited"])
    edited = runs.replay(original, {"n": 8})
    by_name = runs.replay(original, payload={"n": 9}, tags=["renamed"])
    assert finished(edited).payload == {"n": 8} and finished(edited).tags == ["edited"]
    assert finished(by_name).payload == {"n": 9} and finished(by_name).tags == ["renamed"]
    with pytest.raises(TypeError, match="payload twice"):
        runs.replay(original, {"n": 1}, payload={"n": 2})


# -- payload sizes -----------------------------------------------------------------------------


def test_large_payload_is_stored_through_django_storage_and_loaded_transparently(live):
    big = {"blob": "x" * (600 * 1024)}
    handle = tasks.trigger("echo", big)
    row = Run.objects.get(id=handle.id)
    assert row.payload is None and row.payload_ref
    run = finished(handle)
    assert run.status == "COMPLETED"
    assert run.output["payload"] == big


def test_payload_over_10_mb_is_refused_and_nothing_is_created(live):
    with pytest.raises(PayloadTooLargeError, match="10,485,760") as refused:
        tasks.trigger("echo", {"blob": "x" * (10 * 1024 * 1024 + 1)})
    assert not Run.objects.exists()
    assert str(refused.value).startswith("the payload is ")  # no id of a run never made


def test_cancel_also_cancels_children_in_progress(live):
    parent = tasks.trigger("spawner", {})
    child_id = wait_for(lambda: events.values(f"child:{parent.id}"), what="the child")[0]
    assert runs.retrieve(child_id).status == "DELAYED"
    runs.cancel(parent)
    assert runs.retrieve(child_id).status == "CANCELED"
    assert finished(parent).status == "CANCELED"


def test_a_cancel_landing_while_on_success_runs_ends_the_run_with_its_on_cancel(live):
    """The run function returned and its on_success hook runs when the cancel lands: the
    cancel's write comes first, so the run is CANCELED, and its on_cancel hooks run too
    (the monitor had stopped watching the attempt, and no hook ran for the cancel)."""
    handle = tasks.trigger("success-hook-until-go", {})
    wait_for(lambda: events.values(f"on_success:{handle.id}"), what="on_success to start")
    assert runs.cancel(handle).status == "CANCELED"
    events.record(f"go:{handle.id}", True)
    wait_for(lambda: events.values(f"on_cancel:{handle.id}"), what="on_cancel")
    assert events.values(f"on_success:{handle.id}") == ["started", "done"]
    # Its function had returned; the hook sees the signal set, as from the monitor.
    assert events.values(f"on_cancel:{handle.id}") == [[True, "canceled"]]
    run = finished(handle)
    assert (run.status, run.output) == ("CANCELED", None)
    assert LogEntry.objects.filter(
        run_id=handle.id, message__startswith="canceled as its run function returned"
    ).exists()


def test_cancelling_a_finished_parent_leaves_its_children_alone(live):
    """Cancel is a no-op on a run that has ended: the children it left (fire and forget)
    are its finished work's, and go on."""
    parent = tasks.trigger("spawner", {"hold": 0})
    assert finished(parent).status == "COMPLETED"
    child_id = events.values(f"child:{parent.id}")[0]
    assert runs.cancel(parent).status == "COMPLETED"
    assert runs.retrieve(child_id).status == "DELAYED"


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_max_duration_and_cancel_stop_attempts_on_other_pools(own, pool):
    own.worker(pool=pool, concurrency=2 if pool == "threads" else 1)
    own.beat()
    timed = tasks.trigger("stubborn", {"seconds": 30}, max_duration=5)
    run = finished(timed, timeout=30)
    assert run.status == "TIMED_OUT"
    assert events.values(f"finished:{timed.id}") == []
    canceled = tasks.trigger("stubborn", {"seconds": 30})
    wait_for(lambda: events.values(f"started:{canceled.id}"), what="the run to start")
    runs.cancel(canceled)
    wait_for(lambda: canceled.id not in get_store().holding_run_ids(), timeout=20, what="the stop")
    # The worker process survived and takes the next run.
    after = tasks.trigger("echo", {"after": pool})
    assert finished(after).status == "COMPLETED"


def test_an_output_over_the_limit_fails_the_attempt_clearly(own):
    own.worker(concurrency=1, env={"TC_OUTPUT_MAX_SIZE": "1000"})
    own.beat()
    handle = tasks.trigger("big-output", {"size": 5000})
    run = finished(handle)
    assert run.status == "FAILED"
    assert run.error["type"] == "PayloadTooLargeError"
    assert "the limit is 1,000 bytes" in run.error["message"]


def test_pending_version_run_is_queued_when_a_worker_that_knows_the_task_starts(own):
    handle = tasks.trigger("late-task", {"n": 1})
    assert runs.retrieve(handle).status == "PENDING_VERSION"
    old = own.worker(concurrency=1)  # does not know the task: the run stays, visible, not lost
    own.beat()
    time.sleep(1.0)  # a wrong promotion would happen at worker start; nothing to poll for
    assert runs.retrieve(handle).status == "PENDING_VERSION"
    # The deploy replaces the old worker. (While both run, the old one hands such runs
    # back instead of failing them, but may keep getting them: see the README.)
    old.stop()
    own.worker(concurrency=1, env={"TC_EXTRA_APPS": "tests.lateapp"})
    run = finished(handle)
    assert run.status == "COMPLETED"
    assert run.output == {"late": {"n": 1}}


def test_reschedule_of_an_unknown_run_is_a_clear_error(live):
    from trigger_celery.errors import RunNotFoundError

    with pytest.raises(RunNotFoundError, match="run_nope"):
        runs.reschedule("run_nope", delay="1s")
    with pytest.raises(ValueError, match="'soon'"):
        runs.reschedule("run_nope", delay="soon")
