"""Defining, triggering, executing and recording runs, with real workers (SPEC 2, 3, 6)."""

from __future__ import annotations

import pytest
from celery.signals import before_task_publish
from pydantic import ValidationError

from tests.integration.harness import finished, wait_for
from tests.taskapp import events
from tests.taskapp.tasks import greet, hello_world
from trigger_celery import runs, tasks
from trigger_celery.models import Attempt, LogEntry, Run

pytestmark = pytest.mark.integration


def test_hello_world_run_completes_with_its_output_and_one_attempt(live):
    handle = hello_world.trigger({"message": "hi"})
    assert handle.id.startswith("run_")
    run = finished(handle)
    assert run.status == "COMPLETED"
    assert run.is_success and not run.is_failed
    assert run.output == {"message": "hi", "attempt": 1, "run": handle.id}
    assert [(a.number, a.status) for a in run.attempts] == [(1, "COMPLETED")]
    assert run.started_at <= run.finished_at
    assert LogEntry.objects.filter(run_id=handle.id, message="hello").exists()


def test_runs_write_nothing_to_the_projects_celery_result_backend(own, redis_url, settings):
    """A team's result backend is theirs: a run's outcome lives in its row, and the
    messages that carry runs ask Celery to keep no result (one write per attempt else)."""
    import redis

    backend = redis_url.rsplit("/", 1)[0] + "/2"
    store = redis.Redis.from_url(backend)
    store.flushdb()
    settings.CELERY_RESULT_BACKEND = backend  # this process sends
    own.worker(concurrency=2, env={"TC_RESULT_BACKEND": backend})
    handles = [tasks.trigger("echo", {"n": n}) for n in range(3)]
    handles += tasks.batch_trigger("echo", [{"payload": {"n": n}} for n in range(40)]).runs
    assert all(finished(h).status == "COMPLETED" for h in handles)
    assert store.keys("celery-task-meta-*") == []


@pytest.fixture
def eager_app():
    """A team's test settings: CELERY_TASK_ALWAYS_EAGER (runs are sent all the same)."""
    from celery import current_app

    current_app.conf.task_always_eager = True
    try:
        yield
    finally:
        current_app.conf.task_always_eager = False


def test_an_eager_app_under_warnings_as_errors_still_sends_runs(own, eager_app):
    import warnings

    own.worker(concurrency=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # python -W error, pytest's filterwarnings = error
        handles = [tasks.trigger("echo", {"n": 1})]
        handles += tasks.batch_trigger("echo", [{"payload": {"n": n}} for n in range(30)]).runs
    assert all(finished(h).status == "COMPLETED" for h in handles)


def test_a_triggered_run_is_queued_at_the_instant_it_is_created(live):
    handle = hello_world.trigger({"message": "when"})
    row = Run.objects.get(id=handle.id)
    assert row.queued_at == row.created_at  # never queued before it existed


def test_celery_message_carries_only_the_run_id_and_attempt(live):
    bodies = []

    def capture(body=None, headers=None, **kwargs):
        if headers and headers.get("task") == "trigger_celery.execute_run":
            bodies.append(body)

    before_task_publish.connect(capture, weak=False)
    try:
        handle = tasks.trigger("hello-world", {"message": "secret payload"})
        finished(handle)
    finally:
        before_task_publish.disconnect(capture)
    assert bodies, "no execute_run message was published"
    args, kwargs, _embed = bodies[0]
    assert args == [] or args == ()
    assert kwargs == {"run_id": handle.id, "attempt": 1}


def test_retries_are_spaced_by_the_backoff_formula_then_succeed(live):
    handle = tasks.trigger("flaky", {"succeed_on": 3})
    run = finished(handle, timeout=40)
    assert run.status == "COMPLETED"
    assert run.output == {"succeeded_on": 3}
    assert [a.status for a in run.attempts] == ["FAILED", "FAILED", "COMPLETED"]
    starts = [e["t"] for e in events.read(f"flaky:{handle.id}")]
    assert len(starts) == 3
    gap1, gap2 = starts[1] - starts[0], starts[2] - starts[1]
    # min_timeout 1000 ms, factor 2, no jitter: 1 s then 2 s (never earlier).
    assert gap1 >= 1.0
    assert gap2 >= 2.0
    assert gap2 > gap1
    # Dispatch happens when due, not at some later sweep: generous upper bounds.
    assert gap1 < 1.0 + 3.0
    assert gap2 < 2.0 + 3.0


def test_exhausted_retries_fail_the_run_and_call_on_failure_once(live):
    handle = tasks.trigger("always-fails", {})
    run = finished(handle)
    assert run.status == "FAILED"
    assert run.attempt_count == 3
    assert events.values(f"attempts:{handle.id}") == [1, 2, 3]
    assert run.error["type"] == "ValueError"
    assert run.error["message"] == "this task always fails"
    assert "Traceback" in run.error["stack"]
    assert len(events.values(f"on_failure:{handle.id}")) == 1
    assert all(a.error["type"] == "ValueError" for a in run.attempts)


def test_sys_exit_in_a_run_fails_its_attempt_and_the_retry_runs(live):
    handle = tasks.trigger("exits", {})
    run = finished(handle)
    assert run.status == "COMPLETED"
    assert events.values(f"attempts:{handle.id}") == [1, 2]
    first = run.attempts[0]
    assert first.status == "FAILED"  # not CRASHED after its lease: the process lived on
    assert first.error["type"] == "SystemExit"
    assert first.error["message"] == "3"


def test_max_attempts_trigger_option_overrides_the_task_retry_policy(live):
    handle = tasks.trigger("always-fails", {}, max_attempts=1)
    run = finished(handle)
    assert run.status == "FAILED"
    assert events.values(f"attempts:{handle.id}") == [1]


def test_abort_task_run_error_is_never_retried(live):
    handle = tasks.trigger("aborts", {})
    run = finished(handle)
    assert run.status == "FAILED"
    assert run.error["type"] == "AbortTaskRunError"
    assert events.values(f"attempts:{handle.id}") == [1]


def test_schema_task_receives_the_parsed_model(live):
    handle = greet.trigger({"name": "Ada"})
    run = finished(handle)
    assert run.status == "COMPLETED"
    assert run.output == {"type": "Greeting", "text": "hello Ada"}


def test_schema_task_trigger_validates_and_creates_no_run(live):
    with pytest.raises(ValidationError) as info:
        greet.trigger({"count": 2})
    assert "name" in str(info.value)
    assert not Run.objects.exists()


def test_schema_failure_in_worker_fails_without_retry(live):
    # Triggering by id does not validate: the worker does, before the attempt.
    handle = tasks.trigger("greet", {"count": "many"})
    run = finished(handle)
    assert run.status == "FAILED"
    assert run.error["type"] == "TaskPayloadParsedError"
    assert run.error["code"] == "TASK_INPUT_ERROR"
    assert run.attempt_count == 1
    assert events.values(f"attempts:{handle.id}") == []


def test_catch_error_skip_retrying_fails_after_one_attempt(live):
    handle = tasks.trigger("catch-skip", {})
    run = finished(handle)
    assert run.status == "FAILED"
    assert events.values(f"attempts:{handle.id}") == [1]


def test_catch_error_retry_delay_overrides_the_policy(live):
    handle = tasks.trigger("catch-delay", {})
    run = finished(handle, timeout=20)
    assert run.status == "COMPLETED"
    assert run.output == "second attempt"
    assert run.attempt_count == 2


def test_error_inside_catch_error_is_a_handle_error_error(live):
    handle = tasks.trigger("catch-raises", {})
    run = finished(handle)
    assert run.status == "CRASHED"
    assert run.error["code"] == "HANDLE_ERROR_ERROR"
    assert "the handler itself is broken" in run.error["message"]
    assert run.attempt_count == 1


def test_hook_order_when_the_first_attempt_fails(live):
    handle = tasks.trigger("hook-order", {})
    run = finished(handle)
    assert run.status == "COMPLETED"
    assert events.values(f"hooks:{handle.id}") == [
        "on_start_attempt",
        "run",
        "on_start_attempt",
        "run",
        "on_success",
        "on_complete",
    ]


def test_non_json_output_fails_with_a_clear_error(live):
    handle = tasks.trigger("bad-output", {})
    run = finished(handle)
    assert run.status == "FAILED"
    assert run.error["type"] == "SerializationError"
    assert "output" in run.error["message"] and "object" in run.error["message"]
    assert events.values(f"attempts:{handle.id}") == [1]


def test_async_run_function(live):
    handle = tasks.trigger("async-task", {"n": 21})
    run = finished(handle)
    assert run.status == "COMPLETED"
    assert run.output == {"doubled": 42, "attempt": 1}


def test_an_async_run_function_uses_the_blocking_api(live):
    """metadata, logger, tags, trigger, trigger_and_wait, wait and runs from ``async def``:
    Django refuses database work on a running event loop, so each goes off it."""
    handle = tasks.trigger("async-uses-the-api", {"n": 7})
    run = finished(handle, timeout=90)
    assert run.status == "COMPLETED", run.error
    assert run.output == {"child": {"n": 7}, "sibling": "echo", "attempt": 1}
    assert run.metadata["progress"] == 0.5 and "async-tag" in run.tags
    # Written again by each replay of the function after a wait (SPEC 7), all in attempt 1.
    lines = LogEntry.objects.filter(run_id=handle.id, message="from async")
    assert lines.exists() and set(lines.values_list("attempt_number", flat=True)) == {1}


def test_an_async_run_function_behind_async_middleware_stays_inside_its_run(live):
    handle = tasks.trigger("async-behind-async-middleware", {})
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    assert run.output == "set by async middleware"
    assert run.metadata == {"seen": "set by async middleware"}
    assert LogEntry.objects.filter(run_id=handle.id, message="behind async middleware").exists()
    assert events.values(f"awaited-next:{handle.id}") == ["set by async middleware"]


def test_a_sync_run_behind_async_middleware_may_use_the_orm(live):
    """The steps inside async middleware run off its event loop's thread (Django refused
    every ORM call there: SynchronousOnlyOperation on each attempt)."""
    handle = tasks.trigger("orm-behind-async-middleware", {})
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    assert run.output == {"rows": 1} and run.metadata == {"seen": True}
    assert events.values(f"awaited-next:{handle.id}") == [{"rows": 1}]


def test_a_stop_reaches_a_sync_run_behind_async_middleware(own):
    """The monitor interrupts the thread the run's code moved to, not the one waiting
    on the middleware's loop: the attempt stops without its process being ended."""
    worker = own.worker(concurrency=1)
    own.beat()
    handle = tasks.trigger("stubborn-behind-async-middleware", {"seconds": 60}, max_duration=5)
    run = finished(handle, timeout=60)
    assert run.status == "TIMED_OUT"
    assert "ignored its stop" not in worker.log()


def test_an_attempt_that_gave_way_to_its_stop_settles_in_peace_however_long_its_hooks(own):
    """Stopped by max_duration, the code gave way at once; its on_failure hook then takes
    longer than the monitor's hard grace. The monitor must not end the process (or write
    over the outcome) of an attempt that is settling: the hook finishes, the run is
    TIMED_OUT by its own settle, and the process lives on."""
    worker = own.worker(concurrency=1)
    own.beat()
    handle = tasks.trigger("stopped-then-slow-hook", {"seconds": 60}, max_duration=5)
    run = finished(handle, timeout=60)
    assert run.status == "TIMED_OUT"
    wait_for(
        lambda: events.values(f"failure-hook-done:{handle.id}") == [1],
        timeout=30,
        what="the on_failure hook to finish",
    )
    assert "ignored its stop" not in worker.log()
    assert finished(tasks.trigger("echo", {}), timeout=30).status == "COMPLETED"


@pytest.mark.parametrize("stop", ["max_duration", "cancel"])
def test_an_async_run_waiting_at_an_await_is_stopped_there(own, stop):
    """The stop cancels the coroutine at its await: the run ends without its process
    being ended (an exception raised into the thread waited for the await to return)."""
    worker = own.worker(concurrency=1)
    own.beat()
    options = {"max_duration": 5} if stop == "max_duration" else {}
    handle = tasks.trigger("async-sleeper", {"seconds": 60}, **options)
    wait_for(lambda: events.values(f"async-sleeping:{handle.id}"), what="the run to await")
    if stop == "cancel":
        runs.cancel(handle.id)
    run = finished(handle, timeout=45)
    assert run.status == ("TIMED_OUT" if stop == "max_duration" else "CANCELED")
    attempt = wait_for(
        lambda: Attempt.objects.filter(run_id=handle.id, finished_at__isnull=False).first(),
        what="the attempt to end",
    )
    assert attempt.status == ("FAILED" if stop == "max_duration" else "CANCELED")
    assert "ignored its stop" not in worker.log()
    # The worker's one process is free again: the next run starts on it.
    assert finished(tasks.trigger("echo", {}), timeout=30).status == "COMPLETED"


def test_a_middleware_that_never_calls_next_fails_the_attempt(live):
    handle = tasks.trigger("behind-forgetful-middleware", {})
    run = finished(handle)
    assert run.status == "FAILED"
    assert run.error["type"] == "MiddlewareSkippedError"
    assert "_forgets_next returned without calling next()" in run.error["message"]
    assert run.output is None
    assert events.values(f"ran:{handle.id}") == []


def test_stored_log_lines_are_bounded_per_run_and_never_fail_it(own):
    own.worker(env={"TC_LOG_LINES_PER_RUN": "7"})
    own.beat()
    handle = tasks.trigger("chatty", {})
    run = finished(handle)
    assert run.status == "COMPLETED" and run.attempt_count == 2, run.error
    lines = list(LogEntry.objects.filter(run_id=handle.id).order_by("id"))
    # 5 lines in attempt 1, 2 of attempt 2's 5, then one line saying the rest went on.
    assert [line.attempt_number for line in lines] == [1] * 5 + [2] * 3
    assert lines[-1].level == "WARN" and "7 log lines stored" in lines[-1].message
    assert lines[0].attributes["thing"].startswith("<object object at")
    assert len(lines[1].attributes["truncated"]) == 10_000


def test_global_middleware_run_locals_init_and_metadata(live):
    handle = tasks.trigger("uses-middleware", {}, metadata={"source": "test"}, tags=["t1"])
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    assert run.output == {
        "local": "set by middleware for uses-middleware",
        "init": {"from": "global init"},
    }
    assert run.metadata == {"source": "test", "progress": 1}
    assert run.tags == ["t1"]


def test_unknown_task_id_waits_in_pending_version(live):
    handle = tasks.trigger("not-deployed-yet", {"x": 1})
    run = runs.retrieve(handle)
    assert run.status == "PENDING_VERSION"
    assert run.is_queued


def test_the_project_retry_setting_as_an_int_is_the_max_attempts_of_a_run(live, settings):
    settings.TRIGGER_CELERY = {**settings.TRIGGER_CELERY, "RETRY": 5}
    handle = tasks.trigger("not-deployed-yet", {"x": 1})
    assert Run.objects.get(id=handle.id).max_attempts == 5


def test_a_retry_waiting_for_its_time_holds_no_worker(live):
    # Five runs wait a minute for their retry; the worker has four processes.
    waiting = [tasks.trigger("retry-later", {}) for _ in range(5)]
    wait_for(
        lambda: (
            Run.objects.filter(
                id__in=[h.id for h in waiting], status="QUEUED", attempt_count=1
            ).count()
            == 5
        ),
        what="the five runs to be waiting for their retry",
    )
    quick = [hello_world.trigger({"message": str(i)}) for i in range(8)]
    for handle in quick:
        assert finished(handle).status == "COMPLETED"
    for handle in waiting:
        run = Run.objects.get(id=handle.id)
        assert run.status == "QUEUED"
        assert run.available_at is not None and run.available_at > run.queued_at
    assert (
        Attempt.objects.filter(run_id__in=[h.id for h in waiting], status="EXECUTING").count() == 0
    )


def test_runs_list_pages_through_every_run_newest_first(live):
    handles = [tasks.trigger("not-deployed-yet", {"i": i}, tags=["paged"]) for i in range(7)]
    page = runs.list(tag="paged", limit=3)
    assert [r.id for r in page.data] == [h.id for h in reversed(handles)][:3]
    assert page.has_next_page()
    second = page.get_next_page()
    assert [r.id for r in second.data] == [h.id for h in reversed(handles)][3:6]
    # New runs created meanwhile do not shift the cursor.
    tasks.trigger("not-deployed-yet", {"i": "late"}, tags=["paged"])
    third = second.get_next_page()
    assert [r.id for r in third.data] == [handles[0].id]
    assert not third.has_next_page()
    with pytest.raises(LookupError, match="last page"):
        third.get_next_page()
    assert [r.id for r in runs.list(tag="paged", limit=3)][1:] == [h.id for h in reversed(handles)]
    assert {
        r.id for r in runs.list(status="PENDING_VERSION", task_identifier="not-deployed-yet")
    } >= {h.id for h in handles}


def test_every_lifecycle_hook_in_order_with_init_and_result(live):
    handle = tasks.trigger("all-hooks", {})
    run = finished(handle)
    assert run.status == "COMPLETED", run.error
    assert run.output == {"init_seen": {"attempt": 2}}
    calls = events.values(f"all-hooks:{handle.id}")
    assert [c[:2] for c in calls] == [
        ["init", 1],
        ["on_start", 1],  # first attempt only
        ["on_start_attempt", 1],
        ["run", 1],
        ["cleanup", 1],  # after every attempt
        ["init", 2],
        ["on_start_attempt", 2],
        ["run", 2],
        ["cleanup", 2],
        ["on_success", 2],
        ["on_complete", 2],
    ]
    assert calls[3][2] == {"attempt": 1}  # ctx.init is the init hook's return value
    assert calls[-1][2] == {"ok": True, "output": {"init_seen": {"attempt": 2}}}
    # on_success raised: ignored, but recorded on the run.
    assert LogEntry.objects.filter(
        run_id=handle.id, level="ERROR", message__startswith="on_success hook failed"
    ).exists()


def test_an_error_in_on_start_attempt_fails_the_attempt_and_is_retried(live):
    handle = tasks.trigger("start-attempt-fails", {})
    run = finished(handle)
    assert run.status == "COMPLETED"
    assert run.output == 2
    assert run.attempts[0].error["message"] == "on_start_attempt failed"


@pytest.mark.parametrize("fail_in", ["init", "on_start", "on_start_attempt"])
def test_cleanup_runs_after_an_attempt_whose_start_hook_failed(live, fail_in):
    """SPEC 3: cleanup runs after every attempt, success or not, also one that failed
    before its run function was called."""
    handle = tasks.trigger("a-start-hook-fails", {"fail_in": fail_in})
    run = finished(handle)
    assert run.status == "COMPLETED"
    assert run.attempts[0].error["message"] == f"{fail_in} failed"
    assert [attempt for attempt, _init in events.values(f"cleanup:{handle.id}")] == [1, 2]


def test_global_hooks_named_in_settings_are_registered_in_workers(live):
    handle = tasks.trigger("hello-world", {"message": "settings hook"})
    assert finished(handle).status == "COMPLETED"
    wait_for(lambda: events.values(f"settings-hook:{handle.id}"), what="the settings hook")
    assert events.values(f"settings-hook:{handle.id}")[0]["message"] == "settings hook"


def test_a_stale_attempt_cannot_write_to_a_run_another_attempt_owns(live):
    from trigger_celery.engine import transitions

    run = Run.objects.create(
        id="run_fencing", task_identifier="hello-world", status="EXECUTING",
        environment="PRODUCTION", queue="hello-world", max_attempts=3, attempt_count=2,
    )  # fmt: skip
    late = {"output": {"late": True}, "output_ref": "", "execution_ms": 0}
    assert transitions.complete(run.id, 1, **late) == (False, [])
    run.refresh_from_db()
    assert (run.status, run.output) == ("EXECUTING", None)
    current = {"output": {"current": True}, "output_ref": "", "execution_ms": 0}
    assert transitions.complete(run.id, 2, **current) == (True, [])
