"""Herds of triggers that share an idempotency key, a debounce key or a batch key, from
many threads at once (SPEC 5): one run (or batch) per key, the same id for every caller."""

from __future__ import annotations

import pytest

from tests.integration.harness import herd
from tests.taskapp.tasks import echo
from trigger_celery import tasks
from trigger_celery.models import Batch, JoinedKey, Run

pytestmark = pytest.mark.integration


def test_one_key_joining_a_debounced_run_and_not_at_once_is_one_run(live):
    """Half the herd debounces into a pending run, half triggers plainly: the key's run
    was both the pending run (its joined key) and a run of its own before."""
    debounce = {"key": "join-herd", "delay": "1h"}
    for round_ in range(3):
        pending = tasks.trigger("echo", {}, debounce=debounce, idempotency_key=f"own-{round_}")
        key = f"herd-key-{round_}"

        def trigger(i, key=key):
            extra = {"debounce": debounce} if i % 2 else {}
            return tasks.trigger("echo", {"i": i}, idempotency_key=key, **extra)

        handles, errors = herd(12, trigger)
        assert errors == []
        assert len({h.id for h in handles}) == 1, (round_, {h.id for h in handles})
        holders = set(Run.objects.filter(idempotency_key__isnull=False).exclude(
            id=pending.id).exclude(idempotency_key__in=Run.objects.filter(id=pending.id).values(
                "idempotency_key")).values_list("id", flat=True))  # fmt: skip
        joined = set(JoinedKey.objects.values_list("run_id", flat=True))
        assert len(holders | joined) == 1, (holders, joined)
        Run.objects.filter(id=pending.id).update(debounce_key=None)  # the next round's
        JoinedKey.objects.all().delete()
        Run.objects.update(idempotency_key=None)


def test_one_key_with_two_debounce_keys_gives_every_caller_one_run(live):
    """Two pending runs of two debounce keys; one idempotency key joins either: every
    caller gets the run the key holds."""
    first = tasks.trigger("echo", {}, debounce={"key": "two-a", "delay": "1h"})
    second = tasks.trigger("echo", {}, debounce={"key": "two-b", "delay": "1h"})
    handles, errors = herd(
        12,
        lambda i: tasks.trigger(
            "echo", {"i": i}, idempotency_key="two-ways",
            debounce={"key": "two-a" if i % 2 else "two-b", "delay": "1h"},
        ),
    )  # fmt: skip
    assert errors == []
    assert len({h.id for h in handles}) == 1 and handles[0].id in {first.id, second.id}


def test_concurrent_keyed_batches_are_one_batch(live):
    items = [{"payload": 1}, {"payload": 2}, {"payload": 3}]
    made, errors = herd(8, lambda i: echo.batch_trigger(items, idempotency_key="herd-batch"))
    assert errors == []
    assert len({b.id for b in made}) == 1
    assert len({tuple(h.id for h in b.runs) for b in made}) == 1
    assert Batch.objects.count() == 1
    assert Run.objects.count() == 3 and set(Run.objects.values_list("batch_id", flat=True)) == {
        made[0].id
    }


def test_a_batch_of_keyed_items_triggered_again_is_the_same_batch(live):
    items = [{"payload": i, "options": {"idempotency_key": f"item-{i}"}} for i in range(3)]
    first = echo.batch_trigger(items)
    again = echo.batch_trigger(items)
    assert [h.id for h in again.runs] == [h.id for h in first.runs]
    assert all(h.is_cached for h in again.runs)
    assert again.id == first.id
    assert Batch.objects.count() == 1  # no empty batch row


def test_racing_debounces_of_a_task_no_worker_knows_make_one_run(live):
    for round_ in range(3):
        handles, errors = herd(
            12,
            lambda i, r=round_: tasks.trigger(
                "not-known-anywhere", {"i": i}, debounce={"key": f"late-{r}", "delay": "1h"}
            ),
        )
        assert errors == []
        assert len({h.id for h in handles}) == 1, round_
    assert Run.objects.filter(task_identifier="not-known-anywhere").count() == 3


def test_a_keyed_batch_whose_runs_gave_their_keys_up_is_made_anew_once(live):
    from tests.integration.harness import finished

    items = [{"payload": {}}, {"payload": {}}]
    first = tasks.batch_trigger("always-fails", items, idempotency_key="fails-batch")
    assert [finished(h).status for h in first.runs] == ["FAILED", "FAILED"]
    made, errors = herd(
        6, lambda i: tasks.batch_trigger("always-fails", items, idempotency_key="fails-batch")
    )
    assert errors == []
    assert len({b.id for b in made}) == 1 and made[0].id != first.id
    assert not {h.id for h in made[0].runs} & {h.id for h in first.runs}
    assert Batch.objects.count() == 2
    assert Run.objects.filter(batch_id=made[0].id).count() == 2


def test_a_batch_of_1000_with_ten_keys_makes_ten_runs(live):
    items = [{"payload": i, "options": {"idempotency_key": f"dup-{i % 10}"}} for i in range(1000)]
    made = echo.batch_trigger(items)
    ids = [h.id for h in made.runs]
    assert len(ids) == 1000 and len(set(ids)) == 10
    assert all(ids[i] == ids[i % 10] for i in range(1000))
    assert sum(not h.is_cached for h in made.runs) == 10
    assert set(Run.objects.values_list("batch_id", flat=True)) == {made.id}
    again = echo.batch_trigger(items)
    assert again.id == made.id and [h.id for h in again.runs] == ids


def test_part_of_a_keyed_batch_triggered_again_is_a_batch_of_its_own(live):
    items = [{"payload": i, "options": {"idempotency_key": f"part-{i}"}} for i in range(3)]
    first = echo.batch_trigger(items)
    part = echo.batch_trigger(items[:1])
    assert part.id != first.id and [h.id for h in part.runs] == [first.runs[0].id]


def test_one_batch_key_for_two_tasks_makes_two_batches_each_of_its_own_task(live):
    """A keyed batch's id came from its key alone, so a second task's batch with the
    same key was handed the first's row and its runs were put in it, at the same
    indexes (found by review)."""
    from tests.taskapp.tasks import greet

    items = [{"payload": {"name": f"n{i}"}} for i in range(3)]
    first = echo.batch_trigger(items, idempotency_key="nightly")
    second = greet.batch_trigger(items, idempotency_key="nightly")
    assert first.id != second.id
    assert set(Run.objects.filter(batch_id=first.id).values_list("task_identifier", flat=True)) == {
        "echo"
    }
    assert Run.objects.filter(batch_id=second.id).count() == 3
    assert greet.batch_trigger(items, idempotency_key="nightly").id == second.id  # found again
