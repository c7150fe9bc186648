"""``django.tasks`` tasks for the tests of ``task_finished``: when it is sent, how often,
and that a receiver which raises changes nothing about the run."""

import time

from django.tasks import task
from django.tasks.signals import task_finished

from tests.taskapp import events
from trigger_celery.core import run_events
from trigger_celery.core.statuses import FINAL_STATUSES


@task
def counted(tag):
    events.record(f"dj-counted:{tag}", 1)
    return tag


@task
def receiver_raises(tag):
    events.record(f"dj-counted:{tag}", 1)
    return tag


@task
def fails():
    raise RuntimeError("fails on purpose")


@task
def runs_past_max_duration():
    for _ in range(1200):  # a Python loop: the monitor's stop lands between two sleeps
        time.sleep(0.05)


@task
def echo_args(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


def _on_finished(sender, task_result, **kwargs):
    """Records the status sent and the one get_result reads in the receiver."""
    if not task_result.task.module_path.startswith(__name__ + "."):
        return
    seen = task_result.task.get_backend().get_result(task_result.id).status
    events.record(f"dj-finish:{task_result.id}", [str(task_result.status), str(seen)])
    if task_result.task.func is receiver_raises.func:
        raise RuntimeError("a task_finished receiver that fails")


task_finished.connect(_on_finished, weak=False)

_FINAL = frozenset(s.value for s in FINAL_STATUSES)


def _after_the_backends_listener(run_id, event):
    """Subscribed after the backend's listener (the @task lines above made the backend):
    once this records a run's end, every task_finished for that end has been sent."""
    if event in _FINAL:
        events.record(f"dj-ended:{run_id}", event)


run_events.subscribe(_after_the_backends_listener)
