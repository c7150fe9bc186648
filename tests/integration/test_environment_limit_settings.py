"""Environment limits that system checks E004/E005 refuse never reach the shared store
(SPEC 4): every process pushes its own settings there, so one process set up with
``CONCURRENCY_LIMIT = 0`` (or a NaN ``BURST_FACTOR``) used to stop, or uncap, the
runs of every worker of the environment until another process pushed its own."""

from __future__ import annotations

import logging

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.integration.harness import wait_for
from trigger_celery import tasks
from trigger_celery.coordination import EnvironmentLimits
from trigger_celery.coordination.factory import get_store
from trigger_celery.engine import queueing
from trigger_celery.models import Run

pytestmark = pytest.mark.integration


def completed(handle) -> bool:
    return Run.objects.get(id=handle.id).status == "COMPLETED"


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"CONCURRENCY_LIMIT": 0}, "TRIGGER_CELERY['CONCURRENCY_LIMIT'] is 0"),
        ({"BURST_FACTOR": float("nan")}, "TRIGGER_CELERY['BURST_FACTOR'] is nan"),
    ],
)
def test_a_process_with_invalid_environment_limits_leaves_the_others_running(
    fresh_store, settings, caplog, bad, named
):
    fresh_store.worker(concurrency=2)  # no beat: nothing else pushes the limits back
    first = tasks.trigger("hello-world", {"message": "before"})
    wait_for(lambda: completed(first), what="the first run to complete")
    config = dict(settings.TRIGGER_CELERY)
    good = get_store().environment_limits()
    assert good == EnvironmentLimits(config["CONCURRENCY_LIMIT"], config["BURST_FACTOR"])

    settings.TRIGGER_CELERY = {**settings.TRIGGER_CELERY, **bad}
    queueing.reset_caches()  # a process that starts with these settings
    with caplog.at_level(logging.WARNING, logger="trigger_celery"):
        # Its limits are refused, naming the setting; its run is queued all the same,
        # and starts under the limits the other processes pushed.
        theirs = tasks.trigger("hello-world", {"message": "from the misconfigured process"})
    assert get_store().environment_limits() == good
    assert named in caplog.text
    assert "this process does not push its environment limits" in caplog.text
    wait_for(lambda: completed(theirs), what="the misconfigured process's run")
    assert get_store().environment_limits() == good


def test_a_restore_with_invalid_environment_limits_pushes_nothing(fresh_store, settings):
    """The store was flushed (a Redis restart): the first claim restores it, and a
    process whose limits are invalid must not be the one to mark it ready."""
    settings.TRIGGER_CELERY = {**settings.TRIGGER_CELERY, "CONCURRENCY_LIMIT": -1}
    with pytest.raises(ImproperlyConfigured, match="CONCURRENCY_LIMIT'] is -1"):
        queueing.restore()
    assert get_store().environment_limits() is None


def test_a_beat_with_invalid_environment_limits_still_queues_what_falls_due(fresh_store):
    """Beat's pump queues delayed runs, due retries and resumed waits: one set up with a
    NaN BURST_FACTOR must refuse only to push that limit, not stall all of them."""
    fresh_store.worker(concurrency=2)
    first = tasks.trigger("hello-world", {"message": "restores the store"})
    wait_for(lambda: completed(first), what="the first run to complete")
    beat = fresh_store.beat(env={"TC_BURST_FACTOR": "nan"})
    handle = tasks.trigger("hello-world", {"message": "delayed"}, delay=1)
    wait_for(lambda: completed(handle), what="the delayed run, queued by the beat")
    wait_for(lambda: "BURST_FACTOR'] is nan" in beat.log(), what="the beat to name the setting")
    assert "this process does not push its environment limits" in beat.log()
    assert get_store().environment_limits().burst_factor == 1.0
