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
        # The run is recorded, as when the store cannot be reached; the reconciler
        # queues it. Its process's limits are refused, naming the setting.
        stranded = tasks.trigger("hello-world", {"message": "from the misconfigured process"})
    assert get_store().environment_limits() == good
    assert named in caplog.text

    # Set right again, the process triggers runs that start under the store's limits,
    # and beat's reconciler queues the run left behind.
    settings.TRIGGER_CELERY = config
    after = tasks.trigger("hello-world", {"message": "after"})
    wait_for(lambda: completed(after), what="a run triggered after the misconfigured one")
    fresh_store.beat()
    wait_for(lambda: completed(stranded), what="the misconfigured process's run")


def test_a_restore_with_invalid_environment_limits_pushes_nothing(fresh_store, settings):
    """The store was flushed (a Redis restart): the first claim restores it, and a
    process whose limits are invalid must not be the one to mark it ready."""
    settings.TRIGGER_CELERY = {**settings.TRIGGER_CELERY, "CONCURRENCY_LIMIT": -1}
    with pytest.raises(ImproperlyConfigured, match="CONCURRENCY_LIMIT'] is -1"):
        queueing.restore()
    assert get_store().environment_limits() is None
