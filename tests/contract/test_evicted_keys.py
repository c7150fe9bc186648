"""The Redis store after Redis evicted some of its keys (``maxmemory`` with an evicting
policy such as ``allkeys-lru``): what the reconciler asks must not take a listing whose
sub-queue is gone for a queued run, and the indexes of the runs it finds come back.

The chaos test ``tests/chaos/test_store_loss.py`` makes Redis evict for real; here the
keys are deleted by hand, to pin what each question answers."""

from __future__ import annotations

from trigger_celery.coordination import keys
from trigger_celery.coordination.base import Entry, QueueConfig

from .test_store_contract import NOW, claim


def test_known_runs_are_those_queued_or_holding_a_slot(store):
    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    store.enqueue([Entry("a", "q", NOW), Entry("b", "q", NOW + 1)])
    assert claim(store) == ["a"]
    assert store.known_run_ids(["a", "b", "c"]) == {"a", "b"}
    assert store.known_run_ids([]) == set()


def test_a_run_whose_sub_queue_was_evicted_is_not_known(redis_store):
    store = redis_store
    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    store.enqueue([Entry("a", "q", NOW), Entry("b", "q", NOW + 1)])
    sub_queue = keys.sub_queue(store.p, keys.sub_queue_id("q", None))
    assert store.client.delete(sub_queue) == 1
    assert store.queued_run_ids() == {"a", "b"}  # the listing eviction left
    assert claim(store) == []  # stuck: nothing to claim them from
    assert store.known_run_ids(["a", "b"]) == set()
    assert store.queued_run_ids() == set()  # the half-entries are gone
    store.enqueue([Entry("a", "q", NOW), Entry("b", "q", NOW + 1)])  # what reconcile does
    assert claim(store) == ["a"]
    store.release("a")
    assert claim(store, now=NOW + 1) == ["b"]


def test_a_queued_run_evicted_while_its_earlier_attempt_holds_a_slot_is_not_known(
    redis_store,
):
    store = redis_store
    store.configure_queue(QueueConfig("q", concurrency_limit=2))
    store.enqueue([Entry("r", "q", NOW)])
    assert claim(store) == ["r"]
    store.enqueue([Entry("r", "q", NOW + 1, attempt=2)])  # its retry, slot not released yet
    store.client.delete(keys.sub_queue(store.p, keys.sub_queue_id("q", None)))
    assert store.known_run_ids(["r"]) == set()  # the slot alone would never start it again


def test_the_evicted_indexes_of_a_queue_come_back_when_its_runs_are_checked(redis_store):
    store = redis_store
    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    store.configure_queue(QueueConfig("k", concurrency_limit=1))
    store.enqueue([Entry("a", "q", NOW), Entry("b", "k", NOW, concurrency_key="x")])
    p = store.p
    gone = [f"{p}queues", f"{p}due", f"{p}ring:q", f"{p}heads:q", f"{p}ring:k", f"{p}heads:k"]
    gone += [f"{p}subs:q", f"{p}subs:k", f"{p}known"]
    assert store.client.delete(*gone) == len(gone)
    assert claim(store) == []  # stuck: the entries are there, no index leads to them
    assert store.known_run_ids(["a", "b"]) == {"a", "b"}
    assert sorted(claim(store)) == ["a", "b"]
    assert {s.queue for s in store.stats()} == {"q", "k"}
