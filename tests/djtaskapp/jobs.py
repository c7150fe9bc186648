"""``django.tasks`` tasks for the backend's tests. Not named ``tasks.py`` on purpose: a
worker finds them by importing the module their run's task id names. The queue they
use is declared in ``tasks.py``, which every process imports at start."""

import os
import signal
import time

from django.tasks import task
from django.tasks.signals import task_enqueued, task_finished, task_started

from tests.taskapp import events


def _record_signal(name, sender, task_result, **kwargs):
    events.record(f"dj-signal:{task_result.id}", [name, str(task_result.status)])


task_enqueued.connect(lambda **kw: _record_signal("enqueued", **kw), weak=False)
task_started.connect(lambda **kw: _record_signal("started", **kw), weak=False)
task_finished.connect(lambda **kw: _record_signal("finished", **kw), weak=False)


def _record_backend(name, sender, task_result, **kwargs):
    """The alias a receiver sees: the result's, its task's, and get_result's there."""
    again = task_result.task.get_backend().get_result(task_result.id)
    seen = [name, task_result.backend, task_result.task.backend, again.backend]
    events.record(f"dj-signal-backend:{task_result.id}", seen)


task_started.connect(lambda **kw: _record_backend("started", **kw), weak=False)
task_finished.connect(lambda **kw: _record_backend("finished", **kw), weak=False)


class Boom(Exception):
    """A project's own exception, so the error's class path is not a builtin."""


@task
def add(a, b):
    return {"sum": a + b}


@task
def explode(tag):
    events.record(f"dj-explode:{tag}", 1)
    raise Boom(f"boom {tag}")


@task(takes_context=True)
def attempts_seen(context, fail_until):
    events.record(f"dj-context:{context.task_result.id}", context.attempt)
    if context.attempt < fail_until:
        raise RuntimeError(f"attempt {context.attempt} fails on purpose")
    return {"attempt": context.attempt, "id": context.task_result.id}


@task(queue_name="dj-limited")
def hold_slot(key, seconds):
    events.record(f"dj-limited:{key}", ["start", time.time()])
    time.sleep(seconds)
    events.record(f"dj-limited:{key}", ["end", time.time()])
    return key


@task(priority=10)
async def async_add(a, b):
    return a + b


@task
def waits_on_a_child(n):
    """Suspends in a wait and resumes: one attempt, executed twice."""
    from tests.taskapp.tasks import echo

    return echo.trigger_and_wait({"n": n}).unwrap()["payload"]


@task
def returns_a_set():
    return {1, 2}


@task
def killed():
    """Its process dies under it, as under the OOM killer: the run ends CRASHED."""
    os.kill(os.getpid(), signal.SIGKILL)
