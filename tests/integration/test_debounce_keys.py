"""Debounce with idempotency keys and unknown tasks, keyed batches, list filters and
pages from async code (SPEC 5, 6)."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.integration.harness import finished
from tests.taskapp.tasks import LIMIT_2, echo
from trigger_celery import batch, idempotency_keys, runs, tasks
from trigger_celery.models import Batch, Run

pytestmark = pytest.mark.integration


def test_a_key_whose_trigger_joined_a_debounced_run_finds_that_run(live):
    debounce = {"key": "joined-keys", "delay": "1s"}
    r1 = echo.trigger({"e": 1}, idempotency_key="e1", debounce=debounce)
    r2 = echo.trigger({"e": 2}, idempotency_key="e2", debounce=debounce)
    r3 = echo.trigger({"e": 3}, debounce=debounce)  # joins too, with no key
    assert r1.id == r2.id == r3.id and not r2.is_cached
    pending = echo.trigger({"e": 2}, idempotency_key="e2", debounce=debounce)
    assert pending.is_cached and pending.id == r1.id  # while it waits
    assert finished(r1).status == "COMPLETED"
    for key in ("e1", "e2"):  # and once it has run: both keys were satisfied by it
        again = echo.trigger({"e": 9}, idempotency_key=key, debounce=debounce)
        assert again.is_cached and again.id == r1.id
    again = echo.trigger({"e": 9}, idempotency_key="e2")  # without debounce alike
    assert again.is_cached and again.id == r1.id
    assert Run.objects.filter(task_identifier="echo").count() == 1


def test_a_joined_key_is_released_when_its_run_fails(live):
    debounce = {"key": "joined-fails", "delay": "1s"}
    first = tasks.trigger("always-fails", {}, idempotency_key="f1", debounce=debounce)
    joined = tasks.trigger("always-fails", {}, idempotency_key="f2", debounce=debounce)
    assert joined.id == first.id
    assert finished(first).status == "FAILED"
    again = tasks.trigger("always-fails", {}, idempotency_key="f2", debounce=debounce)
    assert not again.is_cached and again.id != first.id


def test_debounce_holds_for_a_task_no_worker_knows_yet(own):
    debounce = {"key": "late-d", "delay": "1s"}
    first = tasks.trigger("late-task", {"n": 1}, debounce=debounce)
    second = tasks.trigger("late-task", {"n": 2}, debounce=debounce)
    assert second.id == first.id
    assert runs.retrieve(first).status == "PENDING_VERSION"
    own.worker(concurrency=1, env={"TC_EXTRA_APPS": "tests.lateapp"})
    own.beat()
    run = finished(first)
    assert run.status == "COMPLETED" and run.output == {"late": {"n": 1}}  # leading
    assert Run.objects.filter(task_identifier="late-task").count() == 1


def test_a_batch_triggered_again_with_its_key_is_the_same_batch(live):
    a = echo.batch_trigger([{"payload": 1}, {"payload": 2}], idempotency_key="K")
    b = echo.batch_trigger([{"payload": 1}, {"payload": 2}], idempotency_key="K")
    assert b.id == a.id
    assert [h.id for h in b.runs] == [h.id for h in a.runs] and all(h.is_cached for h in b.runs)
    assert [r.id for r in batch.retrieve(b.id).runs] == [h.id for h in a.runs]
    assert sorted(r.id for r in runs.list(batch=b.id)) == sorted(h.id for h in a.runs)
    assert Batch.objects.count() == 1  # no empty batch row


def test_delay_with_debounce_is_refused_in_a_batch_item(live):
    items = [{"payload": 1}, {"payload": 2, "options": {"delay": "1h"}}]
    with pytest.raises(ValueError, match=r"(?s)batch item 1: .*delay='1h' and debounce="):
        echo.batch_trigger(items, debounce={"key": "b", "delay": "1s"})
    assert not Run.objects.exists()


def test_list_filters_take_handles_records_and_lists(live):
    handle = echo.batch_trigger([{"payload": 1}, {"payload": 2}])
    other = echo.batch_trigger([{"payload": 3}])
    ids = sorted(h.id for h in handle.runs)
    assert sorted(r.id for r in runs.list(batch=handle)) == ids
    assert sorted(r.id for r in runs.list(batch=batch.retrieve(handle.id))) == ids
    both = sorted(r.id for r in runs.list(batch=[handle.id, other]))
    assert both == sorted([*ids, other.runs[0].id])
    queued = echo.trigger({}, queue="limit-2", delay="1h")
    assert [r.id for r in runs.list(queue=LIMIT_2)] == [queued.id]  # a queue(...)
    assert [r.id for r in runs.list(queue=["limit-2", "nothing"])] == [queued.id]
    with pytest.raises(TypeError, match="batch= must be a string or a list of strings, got"):
        runs.list(batch=[5])
    # An empty list matches no run, and an empty string is refused, naming the filter:
    # both were skipped, and every run listed (batch=[b.id for b in none]).
    for name in ("batch", "status", "tag", "task_identifier", "queue", "schedule"):
        assert list(runs.list(**{name: []})) == [], name
        with pytest.raises(ValueError, match=rf"runs.list {name}=: '' matches nothing"):
            runs.list(**{name: ""})


def test_an_idempotency_key_that_is_no_string_is_refused_by_name():
    for bad in (5, None, {"a": 1}):
        with pytest.raises(ValueError, match=re.escape(f"got {bad!r}")):
            idempotency_keys.create(bad)


def test_next_pages_are_read_off_the_event_loop(live):
    from trigger_celery.off_loop import release_helper

    made = [tasks.trigger("echo", {"i": i}, delay="1h").id for i in range(5)]

    async def main():
        first = runs.list(limit=2)
        second = first.get_next_page()
        return [r.id for r in first.data + second.data], [r.id for r in first]

    try:
        two_pages, every = asyncio.run(main())
    finally:
        release_helper()  # the helper's database connection
    assert two_pages == sorted(made, reverse=True)[:4]
    assert sorted(every) == sorted(made)


@pytest.mark.django_db
def test_a_waiting_run_promoted_to_delayed_leaves_a_debounce_key_another_run_holds():
    """Two first triggers of a task no worker knew raced: one run waited for a worker
    (PENDING_VERSION), the other was DELAYED. The waiting one is promoted without the
    key (one pending run per key), where the unique index refused it before."""
    from datetime import timedelta

    from django.utils import timezone

    from trigger_celery.engine.promotions import promote_pending_versions

    later = timezone.now() + timedelta(minutes=5)
    common = {"task_identifier": "echo", "environment": "PRODUCTION", "max_attempts": 1}
    Run.objects.create(id="run_dk_delayed", status="DELAYED", debounce_key="raced",
                       delayed_until=later, **common)  # fmt: skip
    Run.objects.create(id="run_dk_waiting", status="PENDING_VERSION", debounce_key="raced",
                       delayed_until=later, **common)  # fmt: skip
    promote_pending_versions(["echo"])
    rows = dict(Run.objects.values_list("id", "status"))
    assert rows == {"run_dk_delayed": "DELAYED", "run_dk_waiting": "DELAYED"}
    keys = dict(Run.objects.values_list("id", "debounce_key"))
    assert keys == {"run_dk_delayed": "raced", "run_dk_waiting": None}


def test_a_run_made_before_its_task_was_known_takes_the_tasks_policy_when_promoted(own):
    """Triggered where no process knew the task, the run got the project's defaults;
    once a worker knows it, its retry policy and max_duration apply (it failed after the
    project's 3 attempts, where the task allows 5)."""
    waiting = tasks.trigger("late-with-policy", {})
    kept = tasks.trigger("late-with-policy", {}, max_attempts=2)  # given: it stays
    assert runs.retrieve(waiting).status == "PENDING_VERSION"
    own.worker(concurrency=1, env={"TC_EXTRA_APPS": "tests.lateapp"})
    own.beat()
    run = finished(waiting)
    assert (run.status, run.max_attempts, run.attempt_count) == ("COMPLETED", 5, 5)
    assert run.max_duration == 600
    other = finished(kept)
    assert (other.status, other.max_attempts) == ("FAILED", 2)
