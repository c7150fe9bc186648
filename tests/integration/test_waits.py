"""Waits and child runs that hold no worker (SPEC 7), with real workers."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from celery import current_app

from tests.integration.harness import finished, max_overlap, wait_for
from tests.taskapp import events
from tests.taskapp.tasks import echo
from trigger_celery import queues, runs, tasks, wait
from trigger_celery.errors import OutsideRunError
from trigger_celery.models import LogEntry, Run, Waitpoint

pytestmark = pytest.mark.integration


def test_trigger_and_wait_returns_the_child_output(live):
    handle = tasks.trigger("wait-parent", {"x": 1})
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    assert run.output["ok"] is True
    assert run.output["child"]["payload"] == {"from": "parent", "x": 1}
    child = runs.retrieve(run.output["child_id"])
    assert (child.parent_id, child.root_id, child.depth) == (handle.id, handle.id, 1)


def test_parent_and_child_on_one_limit_1_queue_complete(live):
    run = finished(tasks.trigger("limited-parent", {"n": 20}))
    assert run.status == "COMPLETED", run.error
    assert run.output == 41


def test_batch_trigger_and_wait_keeps_item_order(live):
    run = finished(tasks.trigger("batch-parent", {"n": 6}))
    assert run.status == "COMPLETED", run.error
    assert run.output == [0, 1, 2, 3, 4, 5]


def test_batch_items_given_idempotency_key_none_are_found_by_their_index_as_without(live):
    """``idempotency_key=None`` is no key: the items are the batch's own children, found
    by their index on a replay. Before, the waitpoint listed each item's run, as for
    runs a key of the user's may have found outside the batch."""
    handle = tasks.trigger("batch-parent", {"n": 3, "options": {"idempotency_key": None}})
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    assert run.output == [0, 1, 2]
    (wp,) = Waitpoint.objects.filter(run_id=handle.id)
    assert wp.item_runs is None


def test_batch_trigger_and_wait_of_no_items_returns_no_results_at_once(live):
    run = finished(tasks.trigger("batch-parent", {"n": 0}), timeout=30)
    assert run.status == "COMPLETED", run.error
    assert run.output == []


def test_unwrap_of_a_failed_child_raises_subtask_unwrap_error(live):
    run = finished(tasks.trigger("unwrap-parent", {}))
    assert run.status == "COMPLETED", run.error
    assert run.output["ok"] is False
    assert run.output["task_id"] == "always-fails"
    assert runs.retrieve(run.output["run_id"]).status == "FAILED"
    assert run.output["error"] == "ValueError"
    # The child's error in a line; its traceback stays on err.cause.
    assert run.output["message"].endswith("did not succeed: ValueError: this task always fails")


def test_the_waiting_status_is_observable_and_the_slot_is_free(live):
    handle = tasks.trigger("sleeper", {"seconds": 4})
    waiting = wait_for(
        lambda: (r := runs.retrieve(handle)).status == "WAITING" and r, what="WAITING"
    )
    assert waiting.is_waiting
    from trigger_celery.coordination.factory import get_store

    assert handle.id not in get_store().holding_run_ids()
    assert finished(handle).output == "woke"


def test_24_parents_waiting_3s_do_not_hold_4_worker_processes(live):
    handles = [tasks.trigger("sleeper", {"seconds": 3}) for _ in range(24)]
    for handle in handles:
        assert finished(handle).status == "COMPLETED"
    # More waits were open at one instant than the worker has processes: none held one.
    waits = Waitpoint.objects.filter(run_id__in=[h.id for h in handles])
    spans = [(w.created_at.timestamp(), w.completed_at.timestamp()) for w in waits]
    assert len(spans) == 24
    assert max_overlap(spans) > 4


def test_a_child_failure_resumes_the_parent_with_an_error_result(live):
    run = finished(tasks.trigger("unwrap-parent", {}))
    assert run.output["ok"] is False


def test_code_before_a_wait_is_replayed_but_its_child_is_not_duplicated(live):
    handle = tasks.trigger("replayer", {})
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    # The function ran to the wait, suspended, and was replayed from the top ...
    assert events.values(f"before:{handle.id}") == [1, 1]
    assert events.values(f"after:{handle.id}") == ["woke"]
    # ... and triggered its child once.
    assert Run.objects.filter(task_identifier="sleeper", parent_id=handle.id).count() == 1
    assert [a.status for a in run.attempts] == ["COMPLETED"]  # one attempt, resumed


def test_cancel_of_a_waiting_parent_cancels_its_child_and_never_resumes(live):
    handle = tasks.trigger("waits-on-long-child", {})
    wait_for(lambda: runs.retrieve(handle).status == "WAITING", what="the parent to wait")
    child = Run.objects.get(parent_id=handle.id)
    runs.cancel(handle)
    assert runs.retrieve(handle).status == "CANCELED"
    wait_for(lambda: runs.retrieve(child.id).status == "CANCELED", what="the child to be canceled")
    time.sleep(1.0)  # a wrong resume would run the code after the wait now
    assert events.values(f"after:{handle.id}") == []
    assert runs.retrieve(handle).status == "CANCELED"


def test_waits_nest_three_levels_deep(live):
    run = finished(tasks.trigger("level", {"n": 3}))
    assert run.status == "COMPLETED", run.error
    assert run.output == 3
    assert Run.objects.filter(task_identifier="level").count() == 4
    assert Run.objects.filter(task_identifier="level", depth=3).count() == 1


def test_on_wait_and_on_resume_hooks_fire(live):
    handle = tasks.trigger("hooked-sleeper", {"n": 1})
    assert finished(handle).status == "COMPLETED"
    assert events.values(f"wait-hooks:{handle.id}") == ["on_wait", "on_resume"]
    # Both get the payload and what the run waits on (SPEC 3's keyword arguments).
    seen = [[{"n": 1}, "duration", 0]] * 2
    assert events.values(f"wait-args:{handle.id}") == seen


def test_waits_outside_a_run_are_a_clear_error():
    # Only the run function may wait, not its hooks: the message says so.
    only_there = r"can only be used inside a run \(a task's run function\)$"
    with pytest.raises(OutsideRunError, match=f"wait.for_ {only_there}"):
        wait.for_(seconds=1)
    with pytest.raises(OutsideRunError, match=f"echo.trigger_and_wait {only_there}"):
        echo.trigger_and_wait({})


def test_a_waiting_run_survives_a_restart_of_every_worker_and_beat(own):
    own.worker(concurrency=2)
    beat = own.beat()
    handle = tasks.trigger("sleeper", {"seconds": 20})
    wait_for(lambda: runs.retrieve(handle).status == "WAITING", what="the run to wait")
    for proc in list(own.procs):
        proc.stop()
    assert not beat.alive()
    time.sleep(1.0)
    own.worker(concurrency=2)
    own.beat()
    run = finished(handle, timeout=60)
    assert run.status == "COMPLETED"
    assert run.output == "woke"


def test_waiting_on_an_already_finished_idempotent_child_resumes_at_once(live):
    from trigger_celery import idempotency_keys

    done = tasks.trigger(
        "echo", {"old": True}, idempotency_key=idempotency_keys.create("finished-child")
    )
    finished(done)
    run = finished(tasks.trigger("idem-parent", {"key": "finished-child"}))
    assert run.status == "COMPLETED", run.error
    assert run.output["child"] == done.id
    assert run.output["output"]["payload"] == {"old": True}


def test_max_duration_does_not_count_time_spent_waiting(live):
    run = finished(tasks.trigger("sleeper", {"seconds": 7}, max_duration=5), timeout=60)
    assert run.status == "COMPLETED"
    assert run.output == "woke"


def test_a_wait_step_written_twice_keeps_the_first_row(own):
    # Two executions of the same step race on the unique (run, step): the loser gets
    # the winner's row, also inside a transaction of its caller, which stays usable.
    from django.db import transaction

    from trigger_celery.worker.waits import _record_step

    handle = tasks.trigger("echo", {})
    when = datetime(2030, 1, 1, tzinfo=UTC)
    first = _record_step(handle.id, 0, kind="DATETIME", label="wait", resume_at=when)
    second = _record_step(handle.id, 0, kind="DATETIME", label="other", resume_at=when)
    assert (second.id, second.label) == (first.id, "wait")
    with transaction.atomic():
        third = _record_step(handle.id, 0, kind="DATETIME", label="again", resume_at=when)
        assert third.id == first.id
        assert Run.objects.filter(id=handle.id).exists()  # not a broken transaction
    current_app.control.purge()


def test_a_trigger_that_skips_the_key_lookup_still_finds_the_run_holding_the_key(own):
    # A wait step reached for the first time inserts its child without looking up the
    # child's key first (``key_is_new``). If a run holds the key after all, the lost
    # INSERT finds it; if that run no longer counts, the key is released and the child
    # is written.
    from trigger_celery import idempotency_keys
    from trigger_celery.engine.triggering import trigger_task

    key = idempotency_keys.create("skipped-lookup")
    first = tasks.trigger("echo", {"n": 1}, idempotency_key=key)
    again = trigger_task("echo", {"n": 2}, {"idempotency_key": key}, {}, key_is_new=True)
    assert (again.id, again.is_cached) == (first.id, True)
    assert Run.objects.filter(idempotency_key=str(key)).count() == 1

    Run.objects.filter(id=first.id).update(status="FAILED")  # a failed run frees its key
    fresh = trigger_task("echo", {"n": 3}, {"idempotency_key": key}, {}, key_is_new=True)
    assert fresh.id != first.id and not fresh.is_cached
    assert Run.objects.get(id=first.id).idempotency_key is None
    assert Run.objects.get(id=fresh.id).idempotency_key == str(key)
    current_app.control.purge()


def test_a_suspension_writes_its_waitpoint_and_keeps_a_row_already_at_that_step(own):
    # A parent that suspends on a child its process keeps writes the waitpoint in the
    # suspension's statement. Only if the run moved; and if another execution of the
    # same step wrote that step first, its row stays.
    from trigger_celery.engine import transitions
    from trigger_celery.engine.transitions import start_attempt
    from trigger_celery.models import Waitpoint

    def executing() -> str:
        handle = tasks.trigger("echo", {})
        current_app.control.purge()
        assert start_attempt(handle.id, 1, "test") is not None
        return handle.id

    def row(run_id: str, label: str) -> Waitpoint:
        return Waitpoint(run_id=run_id, step=0, kind="RUN", label=label, child_run_id=run_id)

    first = executing()
    assert transitions.suspend(first, 1, execution_ms=1, waitpoint=row(first, "new"))
    assert Run.objects.get(id=first).status == "WAITING"
    assert Waitpoint.objects.get(run_id=first, step=0).label == "new"

    second = executing()
    Waitpoint.objects.create(run_id=second, step=0, kind="RUN", label="earlier")
    assert transitions.suspend(second, 1, execution_ms=1, waitpoint=row(second, "late"))
    assert Run.objects.get(id=second).status == "WAITING"
    assert [w.label for w in Waitpoint.objects.filter(run_id=second)] == ["earlier"]

    third = executing()
    assert not transitions.suspend(third, 2, execution_ms=1, waitpoint=row(third, "stale"))
    assert not Waitpoint.objects.filter(run_id=third).exists()  # the fence lost: no row


def test_a_childs_final_write_completes_its_waitpoint_and_resumes_only_a_parent_left_waiting(
    own,
):
    # ``transitions.complete(..., resume_with=...)``: one statement on PostgreSQL. A parent with another
    # waitpoint still pending stays WAITING; a parent not WAITING (still executing) only
    # gets its waitpoint completed; a completion that loses its fence writes nothing.
    from trigger_celery.engine import queueing, transitions
    from trigger_celery.engine.transitions import start_attempt
    from trigger_celery.models import Waitpoint

    def executing(parent: str | None = None) -> str:
        handle = tasks.trigger("echo", {})
        current_app.control.purge()
        assert start_attempt(handle.id, 1, "test") is not None
        if parent is not None:
            Run.objects.filter(id=handle.id).update(parent_id=parent)
        return handle.id

    def waiting_on(parent: str, child: str, step: int) -> None:
        Waitpoint.objects.create(run_id=parent, step=step, kind="RUN", child_run_id=child)

    def complete(child: str, attempt: int = 1) -> tuple[bool, list[Run]]:
        return transitions.complete(
            child,
            attempt,
            output={"from": child},
            output_ref="",
            execution_ms=1,
            resume_with={"ok": True, "id": child},
            fields=queueing.ENTRY_FIELDS,
        )

    def pending(parent: str) -> int:
        return Waitpoint.objects.pending().filter(run_id=parent).count()

    parent = executing()
    first, second = executing(parent), executing(parent)
    waiting_on(parent, first, 0)
    waiting_on(parent, second, 1)
    assert transitions.suspend(parent, 1, execution_ms=1)

    assert complete(first) == (True, [])  # the other waitpoint is still pending
    assert Run.objects.get(id=first).status == "COMPLETED"
    assert Run.objects.get(id=parent).status == "WAITING" and pending(parent) == 1
    assert Waitpoint.objects.get(run_id=parent, step=0).result == {"ok": True, "id": first}

    won, resumed = complete(second)
    assert won and [r.id for r in resumed] == [parent]
    assert resumed[0].queue == Run.objects.get(id=parent).queue  # what its entry needs
    row = Run.objects.get(id=parent)
    assert (row.status, row.attempt_count, pending(parent)) == ("QUEUED", 0, 0)

    busy = executing()
    child = executing(busy)
    waiting_on(busy, child, 0)
    assert complete(child, attempt=2) == (False, [])  # fenced out: nothing written
    assert Run.objects.get(id=child).status == "EXECUTING" and pending(busy) == 1
    assert complete(child) == (True, [])  # the waitpoint completes, the parent runs on
    assert Run.objects.get(id=busy).status == "EXECUTING" and pending(busy) == 0
    current_app.control.purge()


def test_a_retry_triggers_again_the_child_that_failed_and_replays_the_one_that_did_not(live):
    """A parent whose attempt failed on its child's error retries with that child run
    again (its key was released), not with the failure replayed; a child that succeeded
    is replayed, not run again."""
    handle = tasks.trigger("retries-past-a-failed-child", {})
    run = finished(handle, timeout=60)
    assert run.status == "COMPLETED", run.error
    assert run.output == "ok" and run.attempt_count == 2
    assert len(events.values(f"fails-once:{handle.id}")) == 2  # a new child the second time
    assert len(set(events.values(f"first-child:{handle.id}"))) == 1


def test_a_batch_wait_gets_a_result_for_every_keyed_item_wherever_its_run_is(live):
    # A key that found a run of another batch (a first parent's wait), or the run an
    # earlier item of the same batch made: each item still has its result, in order.
    first = finished(tasks.trigger("keyed-batch-parent", {"keys": ["kb-a"], "scope": "global"}))
    assert first.status == "COMPLETED", first.error
    ((a_ok, a_id, a_output),) = first.output
    handle = tasks.trigger(
        "keyed-batch-parent", {"keys": ["kb-a", "kb-b", "kb-b"], "scope": "global"}
    )
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    assert [item[0] for item in run.output] == [True, True, True]
    assert run.output[0] == [a_ok, a_id, a_output]  # the first parent's child, cached
    assert run.output[1][1] == run.output[2][1] != a_id
    assert run.output[1][2]["payload"] == {"i": 1}


def test_a_batch_wait_whose_only_keyed_item_is_another_batchs_running_run_resumes(live):
    # Before: the wait's batch had no run of its own, so nothing ever completed it.
    first = tasks.trigger(
        "keyed-batch-parent", {"keys": ["kb-slow"], "scope": "global", "sleep": 3}
    )
    child = wait_for(
        lambda: Run.objects.filter(parent_id=first.id).first(), what="the first parent's child"
    )
    second = tasks.trigger(
        "keyed-batch-parent", {"keys": ["kb-slow"], "scope": "global", "sleep": 3}
    )
    for handle in (first, second):
        run = finished(handle)
        assert run.status == "COMPLETED", run.error
        assert run.output == [[True, child.id, "slept"]]


def test_a_wait_in_on_success_is_a_clear_error_and_the_run_completes_once(live):
    # Before: the wait's suspension escaped the settle and took the worker process with
    # it; the run was executed three times and ended CRASHED.
    handle = tasks.trigger("waits-in-on-success", {})
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    assert run.output == "done"
    assert run.attempt_count == 1
    assert events.values(f"ran:{handle.id}") == [1]
    (message,) = events.values(f"hook-wait:{handle.id}")
    assert message.startswith("OutsideRunError: wait.for_ cannot be used in a hook that runs")


def test_a_wait_in_on_start_is_a_clear_error(live):
    # on_start runs on the first execution only: its wait took the step of the run
    # function's first wait, so a replay skipped the function's wait as done.
    handle = tasks.trigger("waits-in-on-start", {})
    run = finished(handle)
    assert run.status == "FAILED"
    assert run.error["type"] == "OutsideRunError"
    assert run.error["message"].startswith("wait.for_ cannot be used in on_start (it runs")


@pytest.mark.parametrize(
    "task_id", ["triggers-after-its-cancel", "triggers-and-fails-after-its-cancel"]
)
def test_a_child_triggered_by_a_canceled_parent_in_its_grace_period_is_canceled(live, task_id):
    """Also when the parent's code then raises with retries left (found by review).
    runs.cancel cancels the children it finds; one whose trigger committed after that
    look, before the parent's signal was set, is late: the test writes it. The parent's
    code runs on; its own trigger is refused (its signal says canceled), and its settle
    cancels the late child."""
    handle = tasks.trigger(task_id, {})
    wait_for(lambda: events.values(f"started:{handle.id}"), what="the parent to start")
    runs.cancel(handle)
    assert not Run.objects.filter(parent_id=handle.id).exists()  # none when it was canceled
    child = tasks.trigger("cooperative", {}, delay="1h")
    Run.objects.filter(id=child.id).update(parent_id=handle.id)
    wait_for(
        lambda: runs.retrieve(child.id).status == "CANCELED",
        timeout=20,
        what="the late child to be canceled",
    )
    assert runs.retrieve(handle).status == "CANCELED"
    assert list(Run.objects.filter(parent_id=handle.id).values_list("id", flat=True)) == [child.id]


def test_a_wait_until_year_9999_fails_the_run_naming_the_date_and_waits_for_nothing(live):
    handle = tasks.trigger("waits-until", {"until": "9999-12-31T00:00:00+00:00"})
    # Not finished() alone: on a wait it took, the run would be WAITING for 8,000 years.
    run = wait_for(
        lambda: (
            (r := runs.retrieve(handle)).status not in ("QUEUED", "DEQUEUED", "EXECUTING") and r
        ),
        timeout=60,
        what=f"run {handle} to leave the queue and its execution",
    )
    assert run.status == "FAILED", run.status
    assert run.error["message"].startswith(
        "wait.until: '9999-12-31T00:00:00+00:00' is more than the maximum of 10 years"
    )
    assert not Waitpoint.objects.filter(run_id=handle.id).exists()


@pytest.mark.parametrize("until", ["2000-01-01T00:00:00", "2000-01-01T00:00:00+05:00"])
def test_a_wait_until_in_the_past_naive_or_aware_is_over_at_once(live, until):
    run = finished(tasks.trigger("waits-until", {"until": until}))
    assert run.status == "COMPLETED", run.error
    assert run.output == "woke"
    (wp,) = Waitpoint.objects.filter(run_id=run.id)
    assert wp.resume_at == datetime(2000, 1, 1, tzinfo=UTC) - (
        timedelta(hours=5) if until.endswith("+05:00") else timedelta()
    )


def _after_a_suspension(child_queue: str, task_id: str, payload: dict) -> Run:
    """Run ``task_id`` to its end, its children's queue paused until it waits: its first
    wait suspends, and it is replayed. Children that all finish before the wait looks
    would let it go on in place, with no replay (CI met it on PostgreSQL)."""
    queues.pause(child_queue)
    try:
        handle = tasks.trigger(task_id, payload)
        wait_for(lambda: runs.retrieve(handle).status == "WAITING", what=f"{task_id} to wait")
    finally:
        queues.resume(child_queue)
    return finished(handle)


def test_a_replay_that_reaches_a_batch_wait_with_other_items_fails_clearly(live):
    """A batch over rows its children change: on replay the batch step asks for no item,
    and the batch recorded three. Before: the run COMPLETED with [] - three results
    dropped, nothing said (found by the waits audit)."""
    name = f"batches-the-pending-{time.time_ns()}"
    events.client().rpush(f"tc-test:pending:{name}", 1, 2, 3)
    run = _after_a_suspension("marks-done", "batches-the-pending", {"list": name})
    assert run.status == "FAILED", (run.status, run.output)
    assert run.error["type"] == "ReplayMismatchError"
    message = run.error["message"]
    assert message.startswith(f"wait step 0 of run {run.id} ")
    assert "waited on a batch of 3 items before the run suspended" in message
    assert "its replay asks for 0 items" in message


def test_a_caught_replay_mismatch_refuses_later_waits_and_still_fails_the_run(live):
    """The code caught the mismatch and waited again: before, that wait triggered a
    child (and on a later replay could be given the recorded result of another step);
    its steps no longer line up with the recorded ones, so it is refused too. The code
    then returned: the run fails with the mismatch all the same (before, it completed
    with what the code made of steps that no longer lined up)."""
    name = f"swallows-the-pending-{time.time_ns()}"
    events.client().rpush(f"tc-test:pending:{name}", 1, 2, 3)
    run = _after_a_suspension("marks-done", "swallows-the-pending-batch", {"list": name})
    assert events.values(f"swallowed:{name}")[-1] == ["mismatch", "refused"]
    assert run.status == "FAILED", (run.status, run.output)
    assert run.output is None
    assert run.error["type"] == "ReplayMismatchError"
    assert "waited on a batch of 3 items before the run suspended" in run.error["message"]
    assert [(a.number, a.status) for a in run.attempts] == [(1, "FAILED")]
    assert not Run.objects.filter(parent_id=run.id, task_identifier="echo").exists()


@pytest.mark.parametrize("wrap", ["from", "group"])
def test_a_replay_mismatch_raised_wrapped_fails_the_run_without_a_retry(live, wrap):
    """The mismatch came out of the code wrapped (``raise ... from``, an asyncio
    TaskGroup's ExceptionGroup): before, the run was retried under its policy (3
    attempts here), and every replay failed the same way."""
    name = f"wraps-the-pending-batch-{time.time_ns()}"
    events.client().rpush(f"tc-test:pending:{name}", 1, 2, 3)
    payload = {"list": name, "wrap": wrap}
    run = _after_a_suspension("marks-done", "wraps-the-pending-batch", payload)
    assert run.status == "FAILED", (run.status, run.output)
    assert [(a.number, a.status) for a in run.attempts] == [(1, "FAILED")]
    assert run.error["type"] == ("RuntimeError" if wrap == "from" else "ExceptionGroup")
    assert "ReplayMismatchError: wait step 0 of run" in run.error["stack"]
    assert "waited on a batch of 3 items before the run suspended" in run.error["stack"]


def test_a_replayed_batch_step_with_other_item_payloads_warns_once_and_completes(live):
    """A batch over rows its children change, as many after as before: on replay, its
    items ask for other payloads. Each item gets its recorded child's result, and one
    warning names the first item that differs; the next replay (after the run's second
    wait) passes the step again without a second warning. Before, nothing said so."""
    name = f"batches-the-numbered-{time.time_ns()}"
    events.client().rpush(f"tc-test:pending:{name}", 1, 2)
    run = _after_a_suspension("tens-its-item", "batches-the-numbered", {"list": name})
    assert run.status == "COMPLETED", (run.status, run.error)
    assert run.output == [10, 20]
    warned = list(
        LogEntry.objects.filter(run_id=run.id, level="WARN").values_list("message", flat=True)
    )
    assert len(warned) == 1, warned
    (child,) = Run.objects.filter(parent_id=run.id, batch_index=0)
    assert warned[0].startswith(
        f"wait step 0 replayed batch 'tens-its-item' with payload "
        f'{{"index": 0, "item": 10, "list": "{name}"}} for item 0 (and 1 more item), '
        f"but the child it recorded for that item ({child.id}) was triggered with "
        f'{{"index": 0, "item": 1, "list": "{name}"}}: each item gets'
    )


def test_a_replay_that_asks_a_step_for_another_child_payload_says_so_on_the_run(live):
    """A loop over rows its children change: on replay, step 0 asks for item 2, but the
    child recorded at step 0 did item 1. The step gives back its recorded result, in call
    order (SPEC 7), and the run's log lines say which payloads differed; before, nothing
    said so (found by the waits audit)."""
    name = f"loops-over-pending-{time.time_ns()}"
    events.client().rpush(f"tc-test:pending:{name}", 1, 2, 3)
    run = _after_a_suspension("marks-done", "loops-over-pending", {"list": name})
    assert run.status == "COMPLETED", (run.status, run.error)
    warned = LogEntry.objects.filter(run_id=run.id, level="WARN", message__startswith="wait step 0")
    message = warned.first().message
    assert f'with payload {{"item": 2, "list": "{name}"}}' in message
    assert f'was triggered with {{"item": 1, "list": "{name}"}}' in message


def test_a_replay_that_reaches_its_waits_with_the_same_payloads_completes(live):
    """The check compares what the step asks for as it was stored, so a tuple, a set
    and an int key, which JSON turns into lists and strings, are the same on replay."""
    handle = tasks.trigger("waits-with-tuples", {})
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    assert run.output == {"pair": [1, 2], "3": {"s": [4, 5]}}
    assert not LogEntry.objects.filter(run_id=handle.id, level="WARN").exists()
    assert Waitpoint.objects.get(run_id=handle.id).completed_at is not None


def test_a_resumed_run_handed_back_by_a_worker_without_its_task_keeps_its_attempt(own):
    """A rolling deploy: a run waits, and its resume reaches an old worker that does not
    know the task, which hands it back. Before: the hand-back deleted the attempt that ran
    before the wait, so the run started again as a new attempt 1 - its history and logs
    gone, on_start run twice and on_resume never (found by the waits audit)."""
    new = own.worker(concurrency=1, env={"TC_EXTRA_APPS": "tests.lateapp"})
    own.beat()
    handle = tasks.trigger("late-waiter", {"seconds": 3})
    wait_for(lambda: runs.retrieve(handle).status == "WAITING", what="the run to wait")
    new.stop()
    old = own.worker(concurrency=1)  # a worker of the deploy before: no such task
    run = wait_for(
        lambda: (r := runs.retrieve(handle)).status == "PENDING_VERSION" and r,
        timeout=60,
        what="the old worker to hand the resumed run back",
    )
    assert [(a.number, a.status) for a in run.attempts] == [(1, "SUSPENDED")]
    old.stop()
    own.worker(concurrency=1, env={"TC_EXTRA_APPS": "tests.lateapp"})
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    assert run.output == "resumed"
    assert [(a.number, a.status) for a in run.attempts] == [(1, "COMPLETED")]
    assert events.values(f"late-hooks:{handle.id}") == ["on_start", "on_resume"]


def test_a_wait_in_on_start_attempt_is_a_clear_error(live):
    # on_start_attempt does not run when an attempt resumes: its wait took step 0 on the
    # first execution, and on resume the run function's own wait found that step done
    # and returned at once. Before: COMPLETED, the run function's wait skipped without a
    # word (found by the waits audit).
    handle = tasks.trigger("waits-in-on-start-attempt", {})
    run = finished(handle)
    assert run.status == "FAILED", (run.status, run.output)
    assert run.error["type"] == "OutsideRunError"
    assert run.error["message"].startswith("wait.for_ cannot be used in on_start_attempt (it")
    assert not Waitpoint.objects.filter(run_id=handle.id).exists()


@pytest.mark.parametrize("then_raise", [False, True])
def test_a_wait_caught_by_a_bare_except_still_suspends_the_run(live, then_raise):
    # Before: the caught suspension let the code go on, and the run ended COMPLETED with
    # "swallowed" (or FAILED with the except clause's error) while its child ran on,
    # its result never used (found by the waits audit).
    handle = tasks.trigger("swallows-its-wait", {"raise": then_raise})
    run = finished(handle)
    assert run.status == "COMPLETED", (run.status, run.output, run.error)
    assert run.output == "woke"
    assert events.values(f"swallowed:{handle.id}") == [1]  # the first execution only
    assert [a.status for a in run.attempts] == ["COMPLETED"]  # one attempt, resumed


@pytest.mark.parametrize("keyed", [True, False])
def test_a_child_payload_made_anew_on_replay_gets_its_recorded_result(live, keyed):
    """A payload with a time in it differs on every replay: the step still gives back
    the child it triggered first, as SPEC 7's call order says; without a key of the
    user's naming the child, the run's log lines say the payloads differed."""
    handle = tasks.trigger("stamps-its-child", {"keyed": keyed})
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    [child] = Run.objects.filter(parent_id=handle.id)
    assert run.output == child.payload["at"]
    warned = LogEntry.objects.filter(run_id=handle.id, level="WARN", message__startswith="wait")
    assert warned.exists() is not keyed


def test_a_step_replayed_with_another_payload_is_warned_of_once_not_on_every_replay(live):
    handle = tasks.trigger("stamps-three-children", {})
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    assert run.output == [True, True, True]
    warned = LogEntry.objects.filter(run_id=handle.id, level="WARN", message__startswith="wait")
    assert sorted(line.attributes["step"] for line in warned) == [0, 1, 2]


def test_a_wait_after_a_caught_wait_triggers_nothing_until_the_first_is_done(live):
    """A bare except around a wait, then a wait that uses its result. Before: the second
    wait triggered a child with the except clause's value, and the replay gave that
    child's result back (found in review of the bare-except fix)."""
    handle = tasks.trigger("catches-a-wait-then-waits-again", {})
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    assert run.output == {"after": 1}
    children = sorted(str(r.payload) for r in Run.objects.filter(parent_id=handle.id))
    assert children == [str({"after": 1}), str({"n": 1})]


def test_a_wait_inside_an_asyncio_task_group_suspends_the_run(live):
    """Before: the suspension came out of the TaskGroup as a BaseExceptionGroup, escaped
    the attempt, and the run stayed EXECUTING until its lease ended, then crashed and
    was retried (found in review of the waits audit)."""
    handle = tasks.trigger("waits-in-a-task-group", {})
    run = finished(handle)
    assert run.status == "COMPLETED", (run.status, run.error)
    assert run.output == {"in": "group"}
    assert [a.status for a in run.attempts] == ["COMPLETED"]


def test_short_waits_spent_in_place_do_not_count_toward_max_duration(live):
    # Before: a wait.for_ of 2 s or less sleeps in the worker, and that sleep counted as
    # compute time, so 8 s of such waits under max_duration=5 ended TIMED_OUT, no retry
    # (SPEC 6: time spent waiting does not count; found by the waits audit).
    handle = tasks.trigger("short-waits-past-max-duration", {})
    run = finished(handle, timeout=60)
    assert run.status == "COMPLETED", (run.status, run.error)
    assert run.output == "done"
    waits = Waitpoint.objects.filter(run_id=handle.id)
    assert waits.count() == 4 and not waits.filter(completed_at=None).exists()
    assert [a.status for a in run.attempts] == ["COMPLETED"]  # never suspended


def test_a_run_queued_to_resume_shows_the_attempt_it_continues(live, admin_client):
    """Its attempt_count is taken back by one until the resumed execution starts (the
    engine's fence); users are shown the attempt it suspended in, not 0: the runs API,
    the dashboard's list and run page, and Django admin's list (found by an audit)."""
    from django.urls import reverse

    queues.pause("echo")  # the child waits until the parent has suspended
    try:
        handle = tasks.trigger("wait-parent", {"resume": "shown"})
        wait_for(lambda: runs.retrieve(handle).status == "WAITING", what="the parent to wait")
        queues.pause("wait-parent")
    finally:
        queues.resume("echo")
    try:
        wait_for(lambda: runs.retrieve(handle).status == "QUEUED", what="its resume, held")
        assert Run.objects.get(id=handle.id).attempt_count == 0  # the engine's own count
        record = runs.retrieve(handle)
        assert record.attempt_count == 1
        assert [(a.number, a.status) for a in record.attempts] == [(1, "SUSPENDED")]
        listed = admin_client.get(reverse("trigger_celery:run-list-json")).json()["runs"]
        assert [r["attempts"] for r in listed if r["id"] == handle.id] == [1]
        detail = admin_client.get(reverse("trigger_celery:run-detail-json", args=[handle.id]))
        assert detail.json()["attempts"] == 1
        page = admin_client.get(reverse("trigger_celery:run-detail", args=[handle.id]))
        assert '<span id="tc-attempts">1</span>' in page.content.decode()
        changelist = admin_client.get(reverse("admin:trigger_celery_run_changelist"))
        assert '<td class="field-attempts">1</td>' in changelist.content.decode()
    finally:
        queues.resume("wait-parent")
    run = finished(handle)
    assert (run.status, run.attempt_count) == ("COMPLETED", 1)


def test_a_batch_waits_outputs_kept_in_storage_are_read_when_the_parent_resumes(live):
    """A batch wait's results were one database value holding every output, those kept
    in storage too: 1,000 outputs of 270 KB passed PostgreSQL's 256 MB cap for a jsonb
    value, the waitpoint was never completed, and the parent waited forever. Outputs in
    storage stay there now (and past 16 MB, inline ones stay in their runs)."""
    sizes = [600_000, 10, 700_000]  # above the 512 KB inline limit: kept in storage
    run = finished(tasks.trigger("batches-big-echoes", {"sizes": sizes}))
    assert run.status == "COMPLETED", run.error
    assert run.output == sizes
    (wp,) = Waitpoint.objects.filter(run_id=run.id)
    assert [bool(r.get("output_in_run")) for r in wp.result] == [True, False, True]
    assert len(json.dumps(wp.result)) < 10_000


def test_waits_on_children_named_by_task_id(live):
    """``tasks.trigger_and_wait`` and ``tasks.batch_trigger_and_wait`` by id, as
    Trigger.dev has them: before, a bare AttributeError."""
    run = finished(tasks.trigger("waits-by-id", {}))
    assert run.status == "COMPLETED", run.error
    assert run.output == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert Run.objects.filter(parent_id=run.id, task_identifier="echo").count() == 3
    with pytest.raises(OutsideRunError):
        tasks.trigger_and_wait("echo", {})
    with pytest.raises(ValueError, match="task id"):
        tasks.batch_trigger_and_wait("", [])
