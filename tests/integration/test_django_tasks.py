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
    finished(result)
    assert result.started_at >= when
    assert result.return_value == {"sum": 8}


def test_priority_maps_to_the_runs_priority(live):
    result = finished(jobs.add.using(priority=7).enqueue(0, 0))
    assert Run.objects.get(id=result.id).priority == 7
    assert jobs.add.get_result(result.id).task.priority == 7


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
    assert jobs.hold_slot.get_result(result.id).status == TaskResultStatus.FAILED


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


def test_task_finished_is_sent_for_a_run_whose_worker_process_died(live):
    result = jobs.killed.using(trigger_options={"max_attempts": 1}).enqueue()
    sent = signals_until_finished(result.id)
    assert sent == [["enqueued", "READY"], ["started", "RUNNING"], ["finished", "FAILED"]]
    assert Run.objects.get(id=result.id).status == "CRASHED"
    finished(result)
    assert result.errors and result.errors[-1].traceback


def test_an_idempotency_key_gives_the_first_enqueues_result(live):
    keyed = jobs.add.using(trigger_options={"idempotency_key": uuid.uuid4().hex})
    first = keyed.enqueue(1, 2)
    second = keyed.enqueue(1, 2)
    assert second.id == first.id
    assert finished(second).return_value == {"sum": 3}
    assert Run.objects.filter(task_identifier=jobs.add.module_path, id=first.id).count() == 1
