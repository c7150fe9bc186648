"""What a user sees of an attempt's error, whatever the error is (SPEC 2, 3, 6)."""

from __future__ import annotations

import pytest

from tests.integration.harness import finished, wait_for
from tests.taskapp import events
from trigger_celery import queues, runs, tasks
from trigger_celery.models import LogEntry

pytestmark = pytest.mark.integration


def test_an_error_whose_str_fails_is_recorded_and_retried_like_any_other(live):
    handle = tasks.trigger("raises-unprintable", {})
    run = finished(handle)
    assert run.status == "FAILED"
    assert events.values(f"attempts:{handle.id}") == [1, 2, 3]
    assert [a.status for a in run.attempts] == ["FAILED", "FAILED", "FAILED"]
    assert run.error["type"] == "_UnprintableError"
    assert "_UnprintableError" in run.error["stack"]
    assert len(events.values(f"on_failure:{handle.id}")) == 1


@pytest.mark.parametrize("grouped", [False, True])
def test_a_base_exception_of_the_codes_own_fails_its_attempt_not_a_crash(live, grouped):
    """Not an Exception, and not one that ends a process: each attempt fails with it and
    is retried, instead of escaping the attempt and leaving the run to its lease."""
    handle = tasks.trigger("raises-a-base-exception", {"grouped": grouped})
    run = finished(handle)
    assert run.status == "FAILED", run.error
    assert events.values(f"attempts:{handle.id}") == [1, 2, 3]
    assert [a.status for a in run.attempts] == ["FAILED", "FAILED", "FAILED"]
    assert run.error["type"] == ("BaseExceptionGroup" if grouped else "LibraryBaseError")
    assert "LibraryBaseError" in run.error["stack"]
    assert len(events.values(f"on_failure:{handle.id}")) == 1


def test_a_cancelled_error_raised_by_an_async_run_fails_its_attempt(live):
    handle = tasks.trigger("async-raises-cancelled", {})
    run = finished(handle)
    assert run.status == "FAILED"
    assert events.values(f"attempts:{handle.id}") == [1, 2, 3]
    assert [a.status for a in run.attempts] == ["FAILED", "FAILED", "FAILED"]
    assert run.error["type"] == "CancelledError"
    assert len(events.values(f"on_failure:{handle.id}")) == 1


def test_a_cancelled_error_in_an_async_on_success_hook_is_recorded_not_a_crash(live):
    handle = tasks.trigger("hook-raises-cancelled", {})
    run = finished(handle)
    assert run.status == "COMPLETED"
    assert run.output == "done"
    assert LogEntry.objects.filter(
        run_id=handle.id, level="ERROR", message__startswith="on_success hook failed"
    ).exists()


def test_a_cancelled_error_in_an_async_catch_error_hook_is_a_handle_error_error(live):
    handle = tasks.trigger("hook-raises-cancelled", {"fail": True})
    run = finished(handle)
    assert run.status == "CRASHED"
    assert run.error["code"] == "HANDLE_ERROR_ERROR"
    assert events.values(f"catch_error:{handle.id}") == [1]
    assert [a.status for a in run.attempts] == ["FAILED"]


def test_a_cancel_inside_retry_on_throw_stops_the_block_instead_of_retrying_it(live):
    handle = tasks.trigger("retries-a-block-until-canceled", {})
    wait_for(lambda: events.values(f"tries:{handle.id}"), what="the block's first try")
    runs.cancel(handle.id)
    assert finished(handle).status == "CANCELED"
    # The cancel interrupts the block's call: it leaves on_throw, or (before the
    # fix) the block is tried again and its pool process is ended under it.
    wait_for(
        lambda: events.values(f"left:{handle.id}") or len(events.values(f"tries:{handle.id}")) > 1,
        what="the block to be left or tried again",
    )
    assert events.values(f"tries:{handle.id}") == [1]
    assert events.values(f"left:{handle.id}") == [1]


def test_a_run_canceled_while_its_block_pauses_is_canceled_not_failed_with_its_error(live):
    """A cancel ends retry.on_throw's pause between tries; the block then gives up with
    its own last error. The run was canceled all the same: no catch_error, on_failure
    or on_complete (SPEC 3: on_failure is not for canceled runs)."""
    handle = tasks.trigger("fails-in-a-block-until-canceled", {})
    wait_for(lambda: events.values(f"tries:{handle.id}"), what="the block's first try")
    runs.cancel(handle.id)
    run = finished(handle)
    assert run.status == "CANCELED"
    assert [a.status for a in run.attempts] == ["CANCELED"]
    # Its worker gives the slot back once the attempt has settled, hooks and all.
    wait_for(
        lambda: queues.retrieve("fails-in-a-block-until-canceled").executing == 0,
        what="the attempt to settle",
    )
    assert events.values(f"tries:{handle.id}") == [1]
    assert events.values(f"lifecycle:{handle.id}") == []  # catch_error, on_failure, on_complete


def test_a_cancel_ends_the_pause_of_an_async_block_while_on_cancel_waits_for_the_run(live):
    """An async run's on_cancel hook waits for its run function to end; the cancel's
    signal must end the block's minute-long pause so that it does, within the hook's wait
    (before, the pause was a plain sleep that only the interrupt after the hooks ended)."""
    handle = tasks.trigger("async-fails-in-a-block-until-canceled", {})
    wait_for(lambda: events.values(f"tries:{handle.id}"), what="the block's first try")
    runs.cancel(handle.id)
    assert finished(handle).status == "CANCELED"
    wait_for(
        lambda: events.values(f"finished-in-grace:{handle.id}"),
        timeout=40,
        what="the on_cancel hook to end",
    )
    assert events.values(f"finished-in-grace:{handle.id}") == [True]
    assert events.values(f"tries:{handle.id}") == [1]


def test_an_error_quoting_megabytes_is_stored_shortened_on_the_run_and_its_attempts(live):
    from trigger_celery.core.decisions import ERROR_MESSAGE_LIMIT

    handle = tasks.trigger("raises-a-huge-error", {"size": 4_000_000})
    run = finished(handle)
    assert run.status == "FAILED"
    for error in [run.error] + [a.error for a in run.attempts]:
        assert error["type"] == "ValueError"
        assert error["message"].startswith("the service answered <html>bbb")
        assert error["message"].endswith("bbb</html>")
        assert len(error["message"]) < ERROR_MESSAGE_LIMIT + 100
    assert len(run.attempts) == 2


def test_on_start_attempt_runs_once_per_attempt_not_again_when_the_attempt_resumes(live):
    handle = tasks.trigger("waits-once-with-attempt-hooks", {"succeed_on": 2})
    run = finished(handle)
    seen = events.values(f"lifecycle:{handle.id}")
    assert run.status == "COMPLETED", (run.error, seen)
    assert seen == [
        ["on_start_attempt", 1],
        ["run", 1],
        ["on_wait", 1],
        ["on_resume", 1],
        ["run", 1],  # replayed from the top: the wait returns at once
        ["on_start_attempt", 2],
        ["run", 2],  # the wait passed in attempt 1 is replayed, not waited again
        ["on_success", 2],
        ["on_complete", 2],
    ]


def test_catch_error_gets_the_runs_retry_policy_and_the_retry_it_would_make(live):
    handle = tasks.trigger("catch-error-reads-the-policy", {}, max_attempts=2)
    run = finished(handle)
    assert run.status == "FAILED"
    assert run.error["message"] == "attempt 2 fails"  # not a HANDLE_ERROR_ERROR crash
    # max_attempts is the run's (the trigger option); attempt 2 is the last: no retry.
    assert events.values(f"catch-args:{handle.id}") == [
        [1, 2, 5000, 3, 5000, True],
        [2, 2, 5000, 3, None, False],
    ]


def test_a_parser_raising_an_error_whose_str_fails_is_a_payload_error_not_retried(live):
    handle = tasks.trigger("parser-raises-unprintable", {})
    run = finished(handle)
    assert run.status == "FAILED"
    assert run.error["type"] == "TaskPayloadParsedError"
    assert run.error["code"] == "TASK_INPUT_ERROR"
    assert "_UnprintableError" in run.error["message"]
    assert run.attempt_count == 1


def test_a_hook_error_quoting_megabytes_is_recorded_as_a_bounded_log_line(live):
    from trigger_celery.worker.logger import TEXT_LIMIT

    handle = tasks.trigger("on-success-raises-a-huge-error", {})
    run = finished(handle)
    assert run.status == "COMPLETED"
    line = LogEntry.objects.get(run_id=handle.id, level="ERROR")
    assert len(line.message) < TEXT_LIMIT + 100
    assert line.message.startswith("on_success hook failed: ValueError('zzz")
