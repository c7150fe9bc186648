"""Django's own ``@task`` functions run by the trigger_celery backend, on real workers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import django
import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.utils import timezone

from tests.integration.harness import max_overlap, wait_for
from tests.taskapp import events

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        django.VERSION < (6, 0),
        reason="django.tasks exists from Django 6.0; this leg runs Django < 6 "
        "(tests/unit/test_django_tasks_import.py checks the error there)",
    ),
]

if django.VERSION >= (6, 0):
    from django.tasks import TaskResultStatus, default_task_backend, task_backends
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist

    from tests.djtaskapp import jobs
    from trigger_celery import runs
    from trigger_celery.django_tasks import TriggerCeleryBackend
    from trigger_celery.errors import RunCanceledError, RunExpiredError, SerializationError
    from trigger_celery.models import Run


def finished(result, timeout: float = 60.0):
    def done():
        result.refresh()
        return result.is_finished

    wait_for(done, timeout=timeout, what=f"django task {result.id} to finish")
    return result


def test_enqueue_runs_on_a_worker_and_get_result_gives_the_return_value(live):
    result = jobs.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert isinstance(task_backends["default"], TriggerCeleryBackend)
    finished(result)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"sum": 5}
    assert result.args == [2, 3]
    assert result.attempts == 1
    assert result.worker_ids and result.worker_ids[0]
    again = jobs.add.get_result(result.id)
    assert again.return_value == {"sum": 5}
    assert again.started_at is not None and again.finished_at is not None


def test_the_run_appears_in_runs_list_under_the_tasks_module_path(live):
    result = finished(jobs.add.enqueue(1, 1))
    page = runs.list(task_identifier="tests.djtaskapp.jobs.add")
    assert result.id in [r.id for r in page.data]
    record = runs.retrieve(result.id)
    assert record.task_identifier == jobs.add.module_path
    assert record.queue == "default"
    assert record.output == {"sum": 2}


def test_a_failing_task_fails_after_the_default_retries_with_its_class_path(live):
    tag = uuid.uuid4().hex
    result = finished(jobs.explode.enqueue(tag), timeout=90)
    assert result.status == TaskResultStatus.FAILED
    assert len(events.values(f"dj-explode:{tag}")) == 3  # TRIGGER_CELERY's max_attempts
    assert result.attempts == 3
    assert [e.exception_class_path for e in result.errors] == ["tests.djtaskapp.jobs.Boom"] * 3
    assert result.errors[0].exception_class is jobs.Boom
    assert f"boom {tag}" in result.errors[-1].traceback
    assert "Traceback" in result.errors[-1].traceback
    with pytest.raises(ValueError):
        _ = result.return_value


def test_trigger_options_cap_attempts_and_tag_the_run(live):
    once = jobs.explode.using(trigger_options={"max_attempts": 1, "tags": ["from-django"]})
    tag = uuid.uuid4().hex
    result = finished(once.enqueue(tag))
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 1
    assert runs.retrieve(result.id).tags == ["from-django"]


def test_bad_trigger_options_are_refused_naming_the_value():
    with pytest.raises(InvalidTask, match="queue"):
        jobs.add.using(trigger_options={"queue": "x"})
    with pytest.raises(InvalidTask, match="max_attempts"):
        jobs.add.using(trigger_options={"max_attempts": "many"})


def test_takes_context_sees_the_attempt_number_across_retries(live):
    result = finished(
        jobs.attempts_seen.using(trigger_options={"max_attempts": 3}).enqueue(fail_until=2),
        timeout=90,
    )
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"attempt": 2, "id": result.id}
    assert events.values(f"dj-context:{result.id}") == [1, 2]
    assert [e.exception_class_path for e in result.errors] == ["builtins.RuntimeError"]


def test_run_after_delays_the_run(live):
    when = timezone.now() + timedelta(seconds=3)
    result = jobs.add.using(run_after=when).enqueue(4, 4)
    assert Run.objects.get(id=result.id).status == "DELAYED"
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert default_task_backend.get_result(result.id).task.run_after == when  # as enqueued
    finished(result)
    assert result.started_at >= when
    assert result.return_value == {"sum": 8}


def test_priority_maps_to_the_runs_priority_and_a_negative_one_holds_nothing_back(live):
    """Django's priority p is p x PRIORITY_SECONDS seconds of run priority; a negative one
    is milliseconds (a negative run priority is a place in the future, SPEC 4), so -100
    keeps its order among runs queued together and waits 0.1 s at most (100 s before)."""
    high = finished(jobs.add.using(priority=7).enqueue(0, 0))
    assert Run.objects.get(id=high.id).priority == 7
    assert jobs.add.get_result(high.id).task.priority == 7
    low = finished(jobs.add.using(priority=-100).enqueue(0, 0))  # not 100 s later
    record = Run.objects.get(id=low.id)
    assert record.priority == pytest.approx(-0.1)
    assert jobs.add.get_result(low.id).task.priority == -100


def test_a_django_task_triggered_by_id_runs_in_its_queue(live):
    """The dashboard's test page and ``tasks.trigger`` know the task by its module path:
    its runs take its queue_name, with that queue's limit."""
    from trigger_celery import tasks

    handle = tasks.trigger(jobs.hold_slot.module_path, {"args": ["by-id", 0.01], "kwargs": {}})
    assert Run.objects.get(id=handle.id).queue == "dj-limited"
    assert finished(jobs.hold_slot.get_result(handle.id)).return_value == "by-id"


def test_a_django_task_triggered_by_id_with_another_payload_fails_once_saying_why(live):
    from trigger_celery import tasks

    handle = tasks.trigger(jobs.hold_slot.module_path, "not args and kwargs")
    run = wait_for(lambda: (r := runs.retrieve(handle)).is_completed and r)
    assert run.status == "FAILED" and run.attempt_count == 1  # not retried: it would repeat
    assert run.error["type"] == "TaskPayloadParsedError"
    assert '{"args": [...], "kwargs": {...}}' in run.error["message"]
    result = jobs.hold_slot.get_result(handle.id)  # readable, not an AttributeError
    assert result.status == TaskResultStatus.FAILED and result.args == []


def test_the_queues_django_tasks_use_are_the_ones_listed(live):
    """TASKS' QUEUES are queues from the start; no task adds a queue named after itself."""
    from trigger_celery import queues

    names = {q.name for q in queues.list()}
    assert {"default", "dj-limited"} <= names
    assert jobs.add.module_path not in names
    assert queues.retrieve("dj-limited").concurrency_limit == 1  # the declaration's
    queues.pause("default")
    try:
        assert queues.retrieve("default").paused
    finally:
        queues.resume("default")


def test_values_that_are_not_json_are_named_and_a_return_value_is_not_retried(live):
    with pytest.raises(
        SerializationError, match=r"args must be JSON: .*'set'.* in \[\{1, 2\}, 1\]"
    ):
        jobs.add.enqueue({1, 2}, 1)
    result = finished(jobs.returns_a_set.enqueue())
    assert result.status == TaskResultStatus.FAILED
    assert len(result.errors) == 1  # the same value again would fail the same way
    assert result.errors[0].exception_class is SerializationError
    assert "the return value must be JSON" in result.errors[0].traceback


def test_bad_task_fields_are_invalid_task_errors_naming_the_value(live):
    with pytest.raises(InvalidTask, match="queue_name: '' is not a non-empty string"):
        jobs.add.using(queue_name="")
    with pytest.raises(InvalidTask, match="priority must be a whole number, got '5'"):
        jobs.add.using(priority="5")
    with pytest.raises(InvalidTask, match="run_after must be a datetime, got '2030-01-01'"):
        jobs.add.using(run_after="2030-01-01")
    # Past the 10-year horizon: named as run_after, not as the delay it becomes.
    far = timezone.now() + timedelta(days=365 * 20)
    with pytest.raises(InvalidTask, match=r"^run_after: .* more than the maximum of 10 years"):
        jobs.add.using(run_after=far).enqueue(1, 1)
    assert not Run.objects.exists()


def test_get_result_through_another_alias_keeps_the_priority_it_was_enqueued_with(live):
    """Read through the default alias, a run enqueued through one whose PRIORITY_SECONDS
    is 10 had its priority converted with the default's 1 s: 5 read back as 50."""
    bulk = task_backends["bulk"]
    bulk.priority_seconds = 10.0  # what OPTIONS={"PRIORITY_SECONDS": 10} makes it
    try:
        result = jobs.add.using(backend="bulk", priority=5).enqueue(1, 1)
        assert result.task.priority == 5
        assert jobs.add.get_result(result.id).task.priority == 5
    finally:
        bulk.priority_seconds = 1.0


def test_a_queue_limit_holds_for_django_tasks(live):
    key = uuid.uuid4().hex
    results = [jobs.hold_slot.enqueue(key, 0.3) for _ in range(4)]
    for r in results:
        finished(r)
    assert {r.status for r in results} == {TaskResultStatus.SUCCESSFUL}
    marks = events.values(f"dj-limited:{key}")
    starts = [t for kind, t in marks if kind == "start"]
    ends = [t for kind, t in marks if kind == "end"]
    assert len(starts) == len(ends) == 4
    assert max_overlap(list(zip(sorted(starts), sorted(ends), strict=True))) == 1
    assert {Run.objects.get(id=r.id).queue for r in results} == {"dj-limited"}


def test_get_result_of_an_unknown_id_raises_task_result_does_not_exist(live):
    with pytest.raises(TaskResultDoesNotExist):
        jobs.add.get_result("run_does_not_exist")
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("run_does_not_exist")


def test_get_result_imports_no_module_a_run_row_names_outside_the_deployment(live):
    """The row is data: ``this.s`` made get_result import the ``this`` module (and print
    the Zen of Python), where a worker imports only the deployment's own code."""
    import sys

    result = jobs.add.enqueue(1, 2)
    assert finished(result).return_value == {"sum": 3}
    sys.modules.pop("this", None)
    Run.objects.filter(id=result.id).update(task_identifier="this.s")
    with pytest.raises(TaskResultDoesNotExist, match=r"is not a django\.tasks run"):
        default_task_backend.get_result(result.id)
    assert "this" not in sys.modules


def test_enqueue_inside_a_transaction_happens_on_commit_and_not_after_rollback(live):
    with pytest.raises(RuntimeError), transaction.atomic():
        lost = jobs.add.enqueue(9, 9)
        raise RuntimeError("roll back")
    assert not Run.objects.filter(id=lost.id).exists()
    with transaction.atomic():
        kept = jobs.add.enqueue(5, 6)
    assert finished(kept).return_value == {"sum": 11}


def test_aenqueue_and_aget_result_run_an_async_task(live):
    # Django runs the sync backend calls in asgiref's one thread-sensitive thread, which
    # opens its own database connection: close it as a request's end would.
    close = sync_to_async(connections.close_all, thread_sensitive=True)

    async def scenario():
        try:
            return (await jobs.async_add.aenqueue(20, 22)).id
        finally:
            await close()

    result_id = asyncio.run(scenario())
    finished(jobs.async_add.get_result(result_id))

    async def fetch():
        try:
            return await jobs.async_add.aget_result(result_id)
        finally:
            await close()

    result = asyncio.run(fetch())
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42


def test_djangos_signals_are_sent_for_enqueue_here_and_start_and_finish_in_the_worker(live):
    result = finished(jobs.add.enqueue(1, 2))
    assert events.values(f"dj-signal:{result.id}") == [
        ["enqueued", "READY"],
        ["started", "RUNNING"],
        ["finished", "SUCCESSFUL"],
    ]


def test_task_finished_is_sent_once_after_the_last_retry_fails(live):
    result = finished(jobs.explode.using(trigger_options={"max_attempts": 2}).enqueue("sig"))
    assert events.values(f"dj-signal:{result.id}") == [
        ["enqueued", "READY"],
        ["started", "RUNNING"],
        ["started", "RUNNING"],
        ["finished", "FAILED"],
    ]


def test_a_task_that_waits_starts_once(live):
    """A resume continues the attempt that suspended: Django's task_started is not sent
    again, and the attempt's number stays 1."""
    result = finished(jobs.waits_on_a_child.enqueue(3))
    assert result.return_value == {"n": 3}
    assert events.values(f"dj-signal:{result.id}") == [
        ["enqueued", "READY"],
        ["started", "RUNNING"],
        ["finished", "SUCCESSFUL"],
    ]


def signals_until_finished(result_id: str) -> list[list[str]]:
    """Django's signals for a run, once task_finished is among them (sent after commit)."""
    return wait_for(
        lambda: (
            (sent := events.values(f"dj-signal:{result_id}")) and sent[-1][0] == "finished" and sent
        ),
        what=f"task_finished for {result_id}",
    )


def test_task_finished_is_sent_for_a_run_canceled_here(live):
    from trigger_celery import queues

    queues.pause("dj-limited")  # nothing starts it meanwhile
    try:
        result = jobs.hold_slot.enqueue(uuid.uuid4().hex, 0.01)
        runs.cancel(result.id)
    finally:
        queues.resume("dj-limited")
    assert signals_until_finished(result.id) == [["enqueued", "READY"], ["finished", "FAILED"]]
    canceled = jobs.hold_slot.get_result(result.id)
    assert canceled.status == TaskResultStatus.FAILED
    assert canceled.errors[-1].exception_class is RunCanceledError  # an importable path


def test_task_finished_is_sent_for_a_run_expired_by_beat(live):
    from trigger_celery import queues

    queues.pause("dj-limited")
    try:
        result = jobs.hold_slot.using(trigger_options={"ttl": "1s"}).enqueue("ttl", 0.01)
        sent = signals_until_finished(result.id)
    finally:
        queues.resume("dj-limited")
    assert sent == [["enqueued", "READY"], ["finished", "FAILED"]]
    assert Run.objects.get(id=result.id).status == "EXPIRED"
    assert jobs.hold_slot.get_result(result.id).errors[-1].exception_class is RunExpiredError


def test_task_finished_is_sent_for_a_run_whose_worker_process_died(live):
    result = jobs.killed.using(trigger_options={"max_attempts": 1}).enqueue()
    sent = signals_until_finished(result.id)
    assert sent == [["enqueued", "READY"], ["started", "RUNNING"], ["finished", "FAILED"]]
    assert Run.objects.get(id=result.id).status == "CRASHED"
    finished(result)
    assert result.errors and result.errors[-1].traceback
    assert issubclass(result.errors[-1].exception_class, BaseException)


def test_an_idempotency_key_gives_the_first_enqueues_result(live):
    from django.tasks.signals import task_enqueued

    keyed = jobs.add.using(trigger_options={"idempotency_key": uuid.uuid4().hex})
    sent = []

    def count(sender, task_result, **kwargs):
        sent.append(task_result.id)

    task_enqueued.connect(count)
    try:
        first = keyed.enqueue(1, 2)
        second = keyed.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(count)
    assert second.id == first.id
    assert sent == [first.id]  # the second enqueue found the run: nothing was enqueued
    assert finished(second).return_value == {"sum": 3}
    assert Run.objects.filter(task_identifier=jobs.add.module_path, id=first.id).count() == 1
