"""What a canceled run's code does after its stop (SPEC 7: children are canceled with
their parent). Code that ignores its stop runs on in its grace period; once its signal
says canceled it can trigger nothing, and the children that committed before that are
canceled off the monitor's heartbeat thread."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from django.db import connection, transaction

from tests.integration.harness import finished, wait_for
from tests.taskapp import events
from trigger_celery import runs, tasks
from trigger_celery.coordination.factory import get_store
from trigger_celery.models import LogEntry, Run

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("pool", "form"),
    [
        ("prefork", "trigger"),
        ("threads", "trigger"),
        ("prefork", "batch_trigger_and_wait"),
        ("threads", "trigger_and_wait"),
        ("prefork", "tasks.trigger"),
        ("threads", "batch_trigger"),
    ],
)
def test_a_canceled_run_that_triggers_after_its_stop_triggers_nothing_and_ends_canceled(
    own, pool, form
):
    """The run swallows its stop, then triggers: the trigger is refused before anything
    is written, with an error that names the run and its cancel. That error ends the
    attempt as the cancel it follows (no retry, though attempts are left), and is kept
    with the run's log lines and in the worker's log."""
    worker = own.worker(pool=pool, concurrency=2)
    own.beat()
    handle = tasks.trigger("triggers-after-its-stop", {"form": form})
    wait_for(lambda: events.values(f"started:{handle.id}"), what="the run to start")
    assert runs.cancel(handle).status == "CANCELED"
    wait_for(lambda: events.values(f"triggering:{handle.id}"), what="the trigger after the stop")
    assert events.values(f"stopped:{handle.id}") == ["RunCanceledError"]
    # Its attempt has ended once its slot is back (its settle's last step).
    wait_for(lambda: handle.id not in get_store().holding_run_ids(), what="its attempt to end")
    assert events.values(f"triggered:{handle.id}") == []
    assert not Run.objects.filter(parent_id=handle.id).exists()
    run = runs.retrieve(handle)
    assert run.status == "CANCELED" and run.attempt_count == 1
    assert [a.status for a in run.attempts] == ["CANCELED"]
    refusal = f"run {handle.id} was canceled, so it cannot trigger"
    [line] = LogEntry.objects.filter(run_id=handle.id, message__contains=refusal)
    assert line.level == "ERROR" and line.attempt_number == 1
    assert refusal in worker.log()


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_an_on_cancel_hook_may_trigger_a_run_of_its_own_but_not_wait(own, pool):
    """on_cancel is where a compensation belongs (a refund, a notification): what it
    triggers is not refused, and is not a child of the canceled run, so it is not
    canceled with it. A wait there is refused, naming the hook."""
    own.worker(pool=pool, concurrency=2)
    handle = tasks.trigger("compensates-on-cancel", {})
    wait_for(lambda: events.values(f"started:{handle.id}"), what="the run to start")
    runs.cancel(handle)
    [child_id] = wait_for(
        lambda: events.values(f"compensation:{handle.id}"), what="the compensating trigger"
    )
    compensation = finished(child_id)
    assert compensation.status == "COMPLETED"
    assert compensation.output["payload"] == {"undo": handle.id}
    assert Run.objects.get(id=child_id).parent_id is None
    [refused] = wait_for(lambda: events.values(f"wait-refused:{handle.id}"), what="the wait")
    assert refused.startswith("OutsideRunError: echo.trigger_and_wait cannot be used in on_cancel")
    assert finished(handle).status == "CANCELED"
    assert not Run.objects.filter(parent_id=handle.id).exists()


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_child_triggered_after_a_max_duration_stop_is_canceled_when_the_run_was(own, pool):
    """A run past its max_duration is canceled while its code ignores the stop: its
    signal says max_duration, so a trigger then is not refused. The run's end loses to
    the cancel; the child must be canceled with it, not left DELAYED."""
    own.worker(pool=pool, concurrency=2)
    handle = tasks.trigger("times-out-then-triggers", {})
    wait_for(lambda: events.values(f"stopped:{handle.id}"), what="the max_duration stop")
    assert runs.cancel(handle).status == "CANCELED"
    events.record(f"go:{handle.id}", 1)
    [child_id] = wait_for(lambda: events.values(f"late-child:{handle.id}"), what="the child")
    wait_for(lambda: handle.id not in get_store().holding_run_ids(), what="its attempt to end")
    assert Run.objects.get(id=child_id).parent_id == handle.id
    wait_for(lambda: runs.retrieve(child_id).status == "CANCELED", what="the child's cancel")
    assert runs.retrieve(handle).status == "CANCELED"


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    """Two sockets runs connect to and read from: each waits until the test writes."""
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    for server in servers:
        server.settimeout(60)
    try:
        yield servers
    finally:
        for server in servers:
            server.close()


def _late_child_of(run_id: str) -> str:
    """A child of ``run_id`` written after ``runs.cancel`` looked for its children: what
    a trigger that committed before the run's signal was set leaves behind."""
    late = tasks.trigger("echo", {"late": True}, delay="1h")
    Run.objects.filter(id=late.id).update(parent_id=run_id)
    return late.id


def _lease_of(run_id: str) -> float | None:
    store = get_store()
    claims = store.expired_leases(store.time() + 3600)
    return next((c.lease_expires_at for c in claims if c.run_id == run_id), None)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="sees the blocked cancel in pg_blocking_pids"
)
def test_a_slow_cancel_of_late_children_does_not_stop_the_other_attempts_heartbeats(own, listeners):
    """On a threads worker, a canceled run stuck in one call is given up 5 s after its
    stop, and the children it left are canceled then. That cancel is held up here (the
    test locks the late child's row): meanwhile the monitor still renews the lease of
    the other attempt of the same process, and the cancel completes once the lock goes."""
    worker = own.worker(pool="threads", concurrency=2)
    own.beat()
    other_port, deaf_port = (s.getsockname()[1] for s in listeners)
    other = tasks.trigger("blocked-in-one-call", {"port": other_port})
    other_conn, _ = listeners[0].accept()
    deaf = tasks.trigger("deaf-to-cancel", {"port": deaf_port})
    wait_for(lambda: events.values(f"started:{deaf.id}"), what="the canceled run to start")
    runs.cancel(deaf)
    late_id = _late_child_of(deaf.id)
    deaf_conn, _ = listeners[1].accept()  # after its stop, it waits on the socket
    with other_conn, deaf_conn:
        wait_for(lambda: events.values(f"blocked:{other.id}"), what="the other run to block")
        with transaction.atomic():
            Run.objects.select_for_update().get(id=late_id)
            with connection.cursor() as cursor:

                def cancel_waits_on_us() -> bool:
                    # pg_stat_activity is read once per transaction unless told afresh.
                    cursor.execute("SELECT pg_stat_clear_snapshot()")
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                    )
                    return cursor.fetchone()[0] > 0

                wait_for(cancel_waits_on_us, what="the late child's cancel to wait on the lock")
            before = _lease_of(other.id)
            assert before is not None
            wait_for(
                lambda: (_lease_of(other.id) or 0) > before,
                what="the other attempt's lease renewed while the cancel waits",
            )
            assert Run.objects.get(id=late_id).status == "DELAYED"
        assert finished(late_id).status == "CANCELED"
        wait_for(lambda: "this pool cannot end it" in worker.log(), what="the give-up line")
        assert events.values(f"refused:{deaf.id}") != []
        other_conn.sendall(b"x")
        deaf_conn.sendall(b"x")
        done = finished(other)
        assert done.status == "COMPLETED" and done.attempt_count == 1
    assert finished(deaf).status == "CANCELED"
