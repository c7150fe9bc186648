"""``claim_new``: a slot for a run being created, only when it would start next anyway.

The Redis store does it in one script; the database store keeps the default, which
always says no (the run then takes its queue, as every run did before)."""

from __future__ import annotations

import pytest

from trigger_celery.coordination.base import (
    CoordinationStore,
    Entry,
    EnvironmentLimits,
    QueueConfig,
    StoreNotConfiguredError,
)

NOW = 1_000_000.0
LEASE = 30.0


def claim_new(store: CoordinationStore, run_id: str, queue: str = "q", key: str | None = None):  # type: ignore[no-untyped-def]
    return store.claim_new(Entry(run_id, queue, NOW, key, 1), NOW, lease_seconds=LEASE)


def claim(store: CoordinationStore, now: float = NOW) -> list[str]:
    return [c.run_id for c in store.claim(now, max_count=10, lease_seconds=LEASE)]


def test_a_free_slot_is_taken_for_the_attempt_named(redis_store):
    store = redis_store
    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    c = claim_new(store, "a", key="tenant")
    assert c is not None
    assert (c.run_id, c.queue, c.concurrency_key, c.lease_expires_at, c.attempt) == (
        "a",
        "q",
        "tenant",
        NOW + LEASE,
        1,
    )
    assert store.holding_run_ids() == {"a"}
    assert store.queued_run_ids() == set()
    assert store.release("a", attempt=2) is False  # the slot is attempt 1's
    assert store.heartbeat("a", NOW + 1, LEASE, attempt=1) is True
    [stats] = store.stats("q")
    assert (stats.concurrency_key, stats.executing, stats.queued) == ("tenant", 1, 0)


def test_no_limit_is_exceeded_and_a_refusal_changes_nothing(redis_store):
    store = redis_store
    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    assert claim_new(store, "a") is not None
    assert claim_new(store, "b") is None  # the queue's one slot is taken
    assert claim_new(store, "c", key="other") is not None  # another key has its own
    assert store.holding_run_ids() == {"a", "c"}
    assert store.queued_run_ids() == set()  # "b" was not queued by the refusal
    store.release("a")
    assert claim_new(store, "b") is not None


def test_a_queue_total_and_the_environment_limit_hold(redis_store):
    store = redis_store
    store.configure_queue(QueueConfig("q", concurrency_limit=5, total_limit=2))
    assert claim_new(store, "a", key="k1") is not None
    assert claim_new(store, "b", key="k2") is not None
    assert claim_new(store, "c", key="k3") is None
    store.set_environment_limits(EnvironmentLimits(concurrency_limit=3, burst_factor=1.0))
    assert claim_new(store, "d", queue="p") is not None
    assert claim_new(store, "e", queue="p") is None  # 3 held in the environment
    assert store.holding_run_ids() == {"a", "b", "d"}


def test_a_ready_waiting_run_goes_first(redis_store):
    store = redis_store
    store.enqueue([Entry("waiting", "q", NOW - 1)])
    assert claim_new(store, "new") is None
    store.enqueue([Entry("other-key", "q", NOW - 1, "k")])
    assert claim_new(store, "new", key="k2") is None  # any key of the queue waiting
    assert claim(store) == ["waiting", "other-key"]
    assert claim_new(store, "new") is not None


def test_an_entry_not_ready_yet_does_not_hold_a_new_run_back(redis_store):
    store = redis_store
    store.enqueue([Entry("retry-later", "q", NOW + 60)])
    assert claim_new(store, "new") is not None
    assert claim(store, now=NOW + 61) == ["retry-later"]


def test_a_paused_queue_gives_no_slot(redis_store):
    store = redis_store
    store.set_paused("q", True)
    assert claim_new(store, "a") is None
    store.set_paused("q", False)
    assert claim_new(store, "a") is not None


def test_a_start_counts_toward_the_rate_limit(redis_store):
    store = redis_store
    store.configure_queue(QueueConfig("q", rate_limit_count=2, rate_limit_period=10))
    assert claim_new(store, "a") is not None
    store.enqueue([Entry("b", "q", NOW)])
    assert claim(store) == ["b"]
    assert claim_new(store, "c") is None  # two claims inside the window
    assert store.started("a", NOW) and store.started("b", NOW)
    assert claim_new(store, "c") is None  # two starts inside the window
    assert store.claim_new(Entry("c", "q", NOW, None, 1), NOW + 10.5, lease_seconds=LEASE)


def test_a_claim_not_started_holds_its_rate_place_however_old(redis_store):
    store = redis_store
    store.configure_queue(QueueConfig("q", rate_limit_count=1, rate_limit_period=10))
    assert claim_new(store, "a") is not None
    late = Entry("b", "q", NOW, None, 1)
    assert store.claim_new(late, NOW + 60, lease_seconds=LEASE) is None
    store.started("a", NOW + 60)
    assert store.claim_new(late, NOW + 69, lease_seconds=LEASE) is None
    assert store.claim_new(late, NOW + 70.5, lease_seconds=LEASE) is not None


def test_a_run_the_store_knows_is_left_to_its_queue(redis_store):
    store = redis_store
    store.enqueue([Entry("r", "q", NOW + 60)])
    assert claim_new(store, "r") is None
    assert store.queued_run_ids() == {"r"}
    store.enqueue([Entry("h", "q", NOW)])
    assert claim(store) == ["h"]
    assert claim_new(store, "h") is None  # holds a slot already


def test_a_store_without_limits_refuses(redis_store):
    store = redis_store
    store.flush()
    with pytest.raises(StoreNotConfiguredError):
        claim_new(store, "a")
    assert store.holding_run_ids() == set()


def test_the_database_store_always_queues_instead(transactional_db):
    from trigger_celery.coordination.database import DatabaseStore

    store = DatabaseStore()
    store.set_environment_limits(EnvironmentLimits())
    assert claim_new(store, "a") is None
    assert store.holding_run_ids() == set()
    assert store.queued_run_ids() == set()
