"""Django's ``task_finished``: sent once per run after its end commits, a receiver that
raises changes nothing; where a Django task may live; what enqueue's result shows."""

from __future__ import annotations

import uuid

import django
import pytest

from tests.integration.harness import wait_for
from tests.taskapp import events

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(django.VERSION < (6, 0), reason="django.tasks exists from Django 6.0"),
]

if django.VERSION >= (6, 0):
    from django.tasks import TaskResultStatus, task
    from django.tasks.exceptions import InvalidTask

    from tests import project_djtasks
    from tests.djtaskapp import finishing, jobs
    from trigger_celery.models import Run


def ended(result):
    """The run's final status, once every task_finished for its end has been sent."""
    sent = wait_for(lambda: events.values(f"dj-ended:{result.id}"), what=f"end of {result.id}")
    result.refresh()
    return sent


def finishes(result_id: str) -> list[list[str]]:
    return events.values(f"dj-finish:{result_id}")


def test_task_finished_comes_once_after_the_success_is_committed(live):
    result = finishing.counted.enqueue("ok")
    assert ended(result) == ["COMPLETED"]
    assert finishes(result.id) == [["SUCCESSFUL", "SUCCESSFUL"]]


def test_a_task_finished_receiver_that_raises_leaves_the_run_successful_and_run_once(live):
    tag = uuid.uuid4().hex
    result = finishing.receiver_raises.enqueue(tag)
    assert ended(result) == ["COMPLETED"]
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == tag
    assert events.values(f"dj-counted:{tag}") == [1]
    assert finishes(result.id) == [["SUCCESSFUL", "SUCCESSFUL"]]


def test_task_finished_after_a_failure_comes_once_the_run_has_failed(live):
    result = finishing.fails.using(trigger_options={"max_attempts": 1}).enqueue()
    assert ended(result) == ["FAILED"]
    assert finishes(result.id) == [["FAILED", "FAILED"]]


def test_task_finished_is_sent_once_for_a_run_that_timed_out(live):
    once = finishing.runs_past_max_duration.using(
        trigger_options={"max_duration": 5, "max_attempts": 1}
    )
    result = once.enqueue()
    assert ended(result) == ["TIMED_OUT"]
    assert finishes(result.id) == [["FAILED", "FAILED"]]
    assert Run.objects.get(id=result.id).status == "TIMED_OUT"


def test_enqueue_shows_the_arguments_as_json_carries_them(live):
    result = finishing.echo_args.enqueue(1, b={1: 2})
    assert result.kwargs == {"b": {"1": 2}}
    ended(result)
    assert result.return_value == {"args": [1], "kwargs": {"b": {"1": 2}}}


def test_invalid_trigger_options_name_the_option_and_value():
    with pytest.raises(InvalidTask) as info:
        jobs.add.using(trigger_options={"max_attempts": "3"})
    assert str(info.value) == "trigger_options: max_attempts: '3' is not an int"


def test_a_task_in_the_project_package_outside_the_installed_apps_runs(live):
    result = project_djtasks.project_add.enqueue(2, 3)

    def done():
        result.refresh()
        return result.is_finished

    wait_for(done, timeout=30, what=f"project task {result.id} to finish")
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5


def outside():
    """Stands for a function of a module outside every app and the project package."""


outside.__module__ = "elsewhere.jobs"


def test_a_task_no_worker_would_import_is_refused_naming_its_module():
    with pytest.raises(InvalidTask, match=r"elsewhere\.jobs\.outside: workers import .*"):
        task(outside)


def test_a_task_sent_through_another_alias_of_the_backend_reads_its_result_there(live):
    """``using(backend="bulk")``: the result refreshes through "bulk" and shows the run."""
    result = jobs.add.using(backend="bulk").enqueue(4, 5)
    assert result.backend == "bulk"
    wait_for(lambda: result.refresh() or result.is_finished, what=f"{result.id} to finish")
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"sum": 9}
    again = jobs.add.using(backend="bulk").get_result(result.id)
    assert again.backend == "bulk" and again.task.backend == "bulk"
    assert again.return_value == {"sum": 9}


def test_the_workers_signals_carry_the_alias_the_task_was_sent_through(live):
    """Started and finished in the worker, a run sent with ``using(backend="bulk")``
    reads as "bulk" to a receiver, as it does to get_result."""
    result = jobs.add.using(backend="bulk").enqueue(2, 2)
    wait_for(
        lambda: len(events.values(f"dj-signal-backend:{result.id}")) == 2,
        what=f"task_started and task_finished of {result.id}",
    )
    assert events.values(f"dj-signal-backend:{result.id}") == [
        ["started", "bulk", "bulk", "bulk"],
        ["finished", "bulk", "bulk", "bulk"],
    ]


def test_priority_and_queue_name_outside_what_the_backend_takes_are_named():
    with pytest.raises(InvalidTask, match="priority must be between -100 and 100, got 101"):
        jobs.add.using(priority=101)
    with pytest.raises(InvalidTask, match="got -101"):
        jobs.add.using(priority=-101)
    with pytest.raises(
        InvalidTask,
        match=r"queue_name 'emails' is not in TASKS\['default'\]\['QUEUES'\] \(default, dj-",
    ):
        jobs.add.using(queue_name="emails")
