"""The coordination store contract (``trigger_celery.coordination.base``)."""

from __future__ import annotations

import random
import threading
import time

import pytest

from trigger_celery.coordination.base import (
    Claim,
    CoordinationStore,
    Entry,
    EnvironmentLimits,
    QueueConfig,
    StoreNotConfiguredError,
)

NOW = 1_000_000.0
LEASE = 30.0


def claim(
    store: CoordinationStore, n: int = 10, now: float = NOW, queue: str | None = None
) -> list[str]:
    return [c.run_id for c in store.claim(now, max_count=n, lease_seconds=LEASE, queue=queue)]


def test_claims_in_score_order_and_only_ready_entries(store):
    store.enqueue(
        [Entry("b", "q", NOW - 5), Entry("a", "q", NOW - 10), Entry("later", "q", NOW + 60)]
    )
    assert claim(store) == ["a", "b"]
    assert claim(store) == []
    assert claim(store, now=NOW + 61) == ["later"]


def test_claim_returns_queue_key_and_lease(store):
    store.enqueue([Entry("r", "q", NOW, "tenant-1")])
    [c] = store.claim(NOW, max_count=1, lease_seconds=LEASE)
    assert (c.run_id, c.queue, c.concurrency_key, c.lease_expires_at) == (
        "r",
        "q",
        "tenant-1",
        NOW + LEASE,
    )
    assert store.holding_run_ids() == {"r"}
    assert store.queued_run_ids() == set()


def test_enqueue_again_replaces_the_entry(store):
    store.enqueue([Entry("r", "q", NOW + 100)])
    store.enqueue([Entry("r", "q", NOW - 1)])
    assert store.queued_run_ids() == {"r"}
    assert claim(store) == ["r"]


def test_remove_takes_a_run_out_of_its_queue(store):
    store.enqueue([Entry("r", "q", NOW), Entry("s", "q", NOW)])
    assert store.remove("r") is True
    assert store.remove("r") is False
    assert claim(store) == ["s"]


def test_queue_limit_is_never_exceeded_and_release_frees_a_slot(store):
    store.configure_queue(QueueConfig("q", concurrency_limit=2))
    store.enqueue([Entry(f"r{i}", "q", NOW + i * 0.001 - 1) for i in range(5)])
    assert claim(store) == ["r0", "r1"]
    assert claim(store) == []
    assert store.release("r0") is True
    assert store.release("r0") is False  # double release is harmless
    assert claim(store) == ["r2"]
    assert claim(store) == []


def test_each_concurrency_key_gets_the_queue_limit(store):
    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    store.enqueue([Entry(f"{k}{i}", "q", NOW - 10 + i, k) for k in "abc" for i in range(3)])
    got = claim(store)
    assert sorted(got) == ["a0", "b0", "c0"]
    assert claim(store) == []
    store.release("b0")
    assert claim(store) == ["b1"]


def test_keys_are_served_round_robin_under_a_total_limit(store):
    store.configure_queue(QueueConfig("q", total_limit=1))
    store.enqueue([Entry(f"busy{i}", "q", NOW - 100 + i, "busy") for i in range(50)])
    store.enqueue([Entry("quiet", "q", NOW - 1, "quiet")])
    served = []
    for _ in range(3):
        [run_id] = claim(store, n=1)
        served.append(run_id)
        store.release(run_id)
    assert "quiet" in served[:2]


def test_the_environment_limits_read_back_as_set_and_none_once_flushed(store):
    store.set_environment_limits(EnvironmentLimits(concurrency_limit=7, burst_factor=1.5))
    assert store.environment_limits() == EnvironmentLimits(7, 1.5)
    store.flush()
    assert store.environment_limits() is None


def test_environment_limit_with_burst_across_queues(store):
    store.set_environment_limits(EnvironmentLimits(concurrency_limit=2, burst_factor=1.5))
    store.enqueue([Entry(f"{q}{i}", q, NOW - 10 + i) for q in ("x", "y") for i in range(3)])
    got = claim(store)
    assert len(got) == 3  # floor(2 * 1.5)
    assert sum(1 for r in got if r.startswith("x")) <= 2  # one queue never above the base
    assert sum(1 for r in got if r.startswith("y")) <= 2


def test_one_queue_alone_is_capped_by_the_base_limit_not_the_burst(store):
    store.set_environment_limits(EnvironmentLimits(concurrency_limit=2, burst_factor=1.5))
    store.enqueue([Entry(f"x{i}", "x", NOW - 10 + i) for i in range(4)])
    assert claim(store) == ["x0", "x1"]
    store.enqueue([Entry("y0", "y", NOW)])
    assert claim(store) == ["y0"]  # the burst is for the other queues
    assert claim(store) == []  # floor(2 * 1.5) = 3 held in the environment


def test_between_queues_the_oldest_ready_head_goes_first(store):
    store.enqueue(
        [Entry("x1", "x", NOW - 10), Entry("x2", "x", NOW - 5), Entry("y1", "y", NOW - 8)]
    )
    assert claim(store) == ["x1", "y1", "x2"]


def test_queues_at_their_limit_do_not_starve_the_others(store):
    # Many full queues with an old backlog; a newer run of a free queue must still start
    # with the smallest claim: blocked queues are not scanned.
    for i in range(60):
        store.configure_queue(QueueConfig(f"busy{i}", concurrency_limit=1))
    store.enqueue(
        [Entry(f"b{i}-{j}", f"busy{i}", NOW - 100 + j) for i in range(60) for j in range(3)]
    )
    assert len(claim(store, n=100)) == 60
    store.enqueue([Entry("fresh", "free", NOW - 1)])
    assert claim(store, n=1) == ["fresh"]


def test_keys_with_nothing_ready_do_not_starve_a_ready_key(store):
    store.enqueue([Entry(f"later{i}", "q", NOW + 60, f"k{i}") for i in range(40)])
    store.enqueue([Entry("now", "q", NOW - 1, "ready")])
    assert claim(store, n=1) == ["now"]


def test_changing_limits_frees_parked_queues(store):
    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    store.enqueue([Entry(f"r{i}", "q", NOW - 10 + i) for i in range(4)])
    assert claim(store) == ["r0"]
    assert claim(store) == []
    store.configure_queue(QueueConfig("q", concurrency_limit=2))
    assert claim(store) == ["r1"]
    store.set_environment_limits(EnvironmentLimits(concurrency_limit=2))
    store.configure_queue(QueueConfig("q", concurrency_limit=10))
    assert claim(store) == []  # the queue is capped by the env base limit (2)
    store.set_environment_limits(EnvironmentLimits(concurrency_limit=3))
    assert claim(store) == ["r2"]


def test_enqueue_can_move_a_run_to_another_queue(store):
    store.enqueue([Entry("r", "a", NOW, "k1")])
    store.enqueue([Entry("r", "b", NOW, "k2")])
    assert store.queued_run_ids() == {"r"}
    [c] = store.claim(NOW, max_count=5, lease_seconds=LEASE)
    assert (c.queue, c.concurrency_key) == ("b", "k2")
    assert {(s.queue, s.queued) for s in store.stats()} == {("b", 0)}


def test_one_enqueue_of_runs_sharing_and_not_sharing_their_fields(store):
    """Runs in a row with the same queue, key, score and attempt (a batch's siblings)
    and runs between them that differ, one of them moved out of a sub-queue the same
    call fills: every entry lands where it says, and a sub-queue left empty is gone."""
    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    store.enqueue([Entry("moved", "q", NOW - 50, "old")])
    store.enqueue(
        [Entry(f"s{i}", "q", NOW - 20, "k") for i in range(4)]
        + [Entry("moved", "q", NOW - 30, "k"), Entry("other", "q", NOW - 10, "k2")]
        + [Entry(f"t{i}", "q", NOW - 20, "k") for i in range(2)]
    )
    assert store.queued_run_ids() == {"moved", "other", "s0", "s1", "s2", "s3", "t0", "t1"}
    by_key = {s.concurrency_key: s.queued for s in store.stats()}
    assert by_key == {"k": 7, "k2": 1}  # nothing left under "old"
    got = store.claim(NOW, max_count=10, lease_seconds=LEASE)
    assert sorted((c.run_id, c.concurrency_key) for c in got) == [("moved", "k"), ("other", "k2")]
    for run_id in ["moved", "s0", "s1", "s2", "s3", "t0"]:
        store.release(run_id)
        [c] = store.claim(NOW, max_count=10, lease_seconds=LEASE, queue="q")
        assert c.concurrency_key == "k"
    assert claim(store) == []  # "t1" waits for the slot "t0" holds


def test_a_run_queued_again_while_holding_keeps_one_slot(store):
    store.configure_queue(QueueConfig("q", concurrency_limit=2))
    store.enqueue([Entry("r", "q", NOW)])
    assert claim(store) == ["r"]
    store.enqueue([Entry("r", "q", NOW + 1)])  # a retry, before its slot is released
    assert claim(store, now=NOW + 1) == ["r"]
    assert store.holding_run_ids() == {"r"}
    assert store.release("r") is True
    store.enqueue([Entry(f"s{i}", "q", NOW) for i in range(3)])
    assert len(claim(store, now=NOW + 1)) == 2


def test_paused_queue_starts_nothing_until_resumed(store):
    store.set_paused("q", True)
    assert store.is_paused("q") and store.paused_queues() == {"q"}
    store.enqueue([Entry("r", "q", NOW), Entry("other", "p", NOW)])
    assert claim(store) == ["other"]
    store.set_paused("q", False)
    assert not store.is_paused("q") and store.paused_queues() == set()
    assert claim(store) == ["r"]


def test_rate_limit_counts_starts_inside_the_window(store):
    store.configure_queue(QueueConfig("q", rate_limit_count=2, rate_limit_period=10))
    store.enqueue([Entry(f"r{i}", "q", NOW - 5 + i * 0.01) for i in range(4)])
    assert claim(store) == ["r0", "r1"]
    for r in ("r0", "r1"):
        assert store.started(r, NOW) is True
        assert store.started(r, NOW + 1) is False  # dated once
        store.release(r)
    assert claim(store, now=NOW + 5) == []
    assert claim(store, now=NOW + 10.5) == ["r2", "r3"]


def test_a_rate_limit_counts_starts_not_dispatches(store):
    # Runs dispatched while every worker is busy start late: their places stay in the
    # window until they start, and the window of each start runs from the start itself.
    store.configure_queue(QueueConfig("q", rate_limit_count=2, rate_limit_period=10))
    store.enqueue([Entry(f"r{i}", "q", NOW - 5 + i * 0.01) for i in range(4)])
    assert claim(store) == ["r0", "r1"]
    assert claim(store, now=NOW + 20) == []  # claimed 20 s ago, not started yet
    store.started("r0", NOW + 20)
    store.started("r1", NOW + 21)
    assert claim(store, now=NOW + 29) == []
    assert claim(store, now=NOW + 30.5) == ["r2"]  # r0's start left the window
    assert claim(store, now=NOW + 30.6) == []
    assert claim(store, now=NOW + 31.5) == ["r3"]


def test_a_claim_released_unstarted_gives_its_rate_place_back(store):
    store.configure_queue(QueueConfig("q", rate_limit_count=2, rate_limit_period=10))
    store.enqueue([Entry(f"r{i}", "q", NOW - 5 + i * 0.01) for i in range(3)])
    assert claim(store) == ["r0", "r1"]
    assert claim(store) == []
    store.release("r0", unstarted=True)  # e.g. canceled before any worker started it
    assert store.started("r0", NOW) is False
    assert claim(store) == ["r2"]
    assert claim(store) == []


def test_a_claim_released_without_a_dated_start_still_counts(store):
    # Its worker may have run it without dating the start (a queue its code does not
    # declare, a store call that failed, a lease that ran out mid-run): the place is
    # dated at the release (the store's clock, after this test's NOW), never given back.
    store.configure_queue(QueueConfig("q", rate_limit_count=2, rate_limit_period=10))
    store.enqueue([Entry(f"r{i}", "q", NOW - 5 + i * 0.01) for i in range(3)])
    assert claim(store) == ["r0", "r1"]
    assert store.release("r0") is True
    assert store.started("r0", NOW) is False  # dated already
    assert claim(store) == []


def test_an_adopted_slot_keeps_its_pending_rate_place(store):
    store.configure_queue(QueueConfig("q", rate_limit_count=2, rate_limit_period=10))
    store.enqueue([Entry(f"r{i}", "q", NOW - 5 + i * 0.01) for i in range(3)])
    claims = store.claim(NOW, max_count=10, lease_seconds=LEASE)
    assert [c.run_id for c in claims] == ["r0", "r1"]
    store.adopt(claims[0])  # a restore running beside the claim adopts it again
    assert claim(store) == []
    assert store.started("r0", NOW) is True  # still pending: its start dates it
    assert claim(store, now=NOW + 5) == []


def test_a_seeded_rate_window_counts_past_starts_and_pending_runs(store):
    store.configure_queue(QueueConfig("q", rate_limit_count=3, rate_limit_period=10))
    store.adopt(Claim("c", "q", None, NOW + LEASE, 1))  # restore adopts before it seeds
    store.seed_rate_window("q", [("a@1", NOW - 1), ("b@1", NOW - 2)], ["c"])
    store.seed_rate_window("q", [("a@1", NOW - 1), ("b@1", NOW - 2)], ["c"])  # twice: same
    store.enqueue([Entry(f"r{i}", "q", NOW - 5 + i * 0.01) for i in range(3)])
    assert claim(store) == []  # a, b and c fill the window
    assert claim(store, now=NOW + 8.5) == ["r0"]  # b's start left it
    assert claim(store, now=NOW + 9.5) == ["r1"]  # a's too
    assert claim(store, now=NOW + 30) == []  # c never started: pending, it stays
    assert store.started("c", NOW + 30) is True


def test_a_start_outside_a_rate_limit_is_not_kept(store):
    store.enqueue([Entry("a", "free", NOW)])
    assert claim(store) == ["a"]
    assert store.started("a", NOW) is False
    assert store.started("nobody", NOW) is False


def test_leases_expire_and_heartbeats_extend_them(store):
    store.enqueue([Entry("a", "q", NOW), Entry("b", "q", NOW)])
    assert sorted(claim(store)) == ["a", "b"]
    assert store.heartbeat("a", NOW + 20, LEASE) is True
    expired = store.expired_leases(NOW + LEASE + 1)
    assert [c.run_id for c in expired] == ["b"]
    assert store.heartbeat("nobody", NOW, LEASE) is False
    store.release("b")
    assert store.expired_leases(NOW + LEASE + 1) == []


def test_leases_by_the_stores_own_clock(store):
    # now=None: the store reads its own clock (Redis TIME, the database's) for the
    # claim and the heartbeat, so the caller's clock plays no part in a lease.
    store_now = store.time()
    assert abs(store_now - time.time()) < 60  # the same machine: roughly the same time
    store.enqueue([Entry("a", "q", store_now - 1), Entry("b", "q", store_now - 1)])
    assert sorted(c.run_id for c in store.claim(None, max_count=5, lease_seconds=LEASE)) == [
        "a",
        "b",
    ]
    assert store.expired_leases(None) == []
    assert store.heartbeat("a", None, 3 * LEASE) is True
    later = store.time() + LEASE + 1
    assert [c.run_id for c in store.expired_leases(later)] == ["b"]
    assert store.expired_leases(store.time() + 3 * LEASE + 1) != []


def test_enqueue_and_claim_in_one_call(store):
    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    store.enqueue([Entry("old", "q", NOW - 10)])
    claims = store.enqueue_and_claim(
        [Entry("new", "q", NOW - 1, attempt=1)], NOW, max_count=5, lease_seconds=LEASE
    )
    assert [c.run_id for c in claims] == ["old"]  # the limit holds; order by score
    assert store.queued_run_ids() == {"new"}


def test_release_and_claim_in_one_call_hands_the_slot_on(store):
    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    store.enqueue([Entry("a", "q", NOW - 2, attempt=1), Entry("b", "q", NOW - 1, attempt=1)])
    assert claim(store) == ["a"]
    claims = store.release_and_claim("a", 1, NOW, max_count=5, lease_seconds=LEASE)
    assert [c.run_id for c in claims] == ["b"]
    assert store.holding_run_ids() == {"b"}
    # A stale attempt's release frees nothing, and nothing else can start.
    assert store.release_and_claim("b", 7, NOW, max_count=5, lease_seconds=LEASE) == []
    assert store.holding_run_ids() == {"b"}


def test_the_one_call_forms_work_on_a_server_that_lost_its_scripts(store):
    if hasattr(store, "client"):
        store.client.script_flush()  # as after a Redis restart
    store.enqueue([Entry("a", "q", NOW - 2, attempt=1)])
    if hasattr(store, "client"):
        store.client.script_flush()
    claims = store.enqueue_and_claim(
        [Entry("b", "q", NOW - 1, attempt=1)], NOW, max_count=5, lease_seconds=LEASE
    )
    assert sorted(c.run_id for c in claims) == ["a", "b"]
    if hasattr(store, "client"):
        store.client.script_flush()
    assert store.release_and_claim("a", 1, NOW, max_count=5, lease_seconds=LEASE) == []
    assert store.holding_run_ids() == {"b"}


def test_a_claim_made_beside_a_script_redis_had_lost_is_not_lost(store):
    """One script of a pair cached and the other not (the claim loaded by one process,
    the release never used yet): the claim that ran must come back to the caller, or its
    runs would hold slots that nobody sends."""

    def lose_all_but_claim() -> None:
        if hasattr(store, "client"):
            store.client.script_flush()
            store.client.script_load(store._scripts["claim"].script)

    store.configure_queue(QueueConfig("q", concurrency_limit=3))
    store.enqueue([Entry(r, "q", NOW - i, attempt=1) for i, r in enumerate("abcde")])
    assert claim(store, n=2) == ["e", "d"]
    lose_all_but_claim()
    claims = store.release_and_claim("e", 1, NOW, max_count=5, lease_seconds=LEASE)
    assert sorted(c.run_id for c in claims) == ["b", "c"]  # the free slot, then e's
    assert store.holding_run_ids() == {"d", "c", "b"}
    store.release("b", attempt=1)
    lose_all_but_claim()
    claims = store.enqueue_and_claim(
        [Entry("f", "q", NOW + 60, attempt=1)], NOW, max_count=5, lease_seconds=LEASE
    )
    assert [c.run_id for c in claims] == ["a"]
    assert store.holding_run_ids() == {"d", "c", "a"}
    assert store.queued_run_ids() == {"f"}


def test_next_ready_at_is_the_next_future_score(store):
    assert store.next_ready_at() is None
    soon = time.time() + 30
    store.enqueue([Entry("later", "q", soon + 30), Entry("soon", "q", soon)])
    assert abs(store.next_ready_at() - soon) < 0.01


def test_stats_count_queued_and_executing_per_key(store):
    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    store.enqueue(
        [Entry("a1", "q", NOW, "a"), Entry("a2", "q", NOW, "a"), Entry("b1", "q", NOW, "b")]
    )
    claim(store)
    rows = {(s.queue, s.concurrency_key): s for s in store.stats("q")}
    assert (rows[("q", "a")].queued, rows[("q", "a")].executing) == (1, 1)
    assert (rows[("q", "b")].queued, rows[("q", "b")].executing) == (0, 1)
    assert rows[("q", "a")].concurrency_limit == 1
    store.set_paused("q", True)
    assert all(s.paused for s in store.stats("q"))


def test_stats_give_each_sub_queue_its_lowest_score(store):
    store.enqueue(
        [
            Entry("a1", "q", NOW - 3, "a"),
            Entry("a2", "q", NOW - 9, "a"),
            Entry("later", "q", NOW + 60, "b"),
        ]
    )
    rows = {s.concurrency_key: s for s in store.stats("q")}
    assert rows["a"].oldest_score == NOW - 9
    assert rows["b"].oldest_score == NOW + 60
    assert claim(store) == ["a2", "a1"]  # key a has slots now and no entry left
    rows = {s.concurrency_key: s for s in store.stats("q")}
    assert (rows["a"].executing, rows["a"].oldest_score) == (2, None)


def test_claim_can_be_restricted_to_one_queue(store):
    store.enqueue([Entry("a", "qa", NOW - 5), Entry("b", "qb", NOW)])
    assert claim(store, queue="qb") == ["b"]
    assert claim(store) == ["a"]


def test_flush_forgets_everything(store):
    store.enqueue([Entry("a", "q", NOW), Entry("b", "q", NOW)])
    claim(store, n=1)
    store.flush()
    assert store.queued_run_ids() == set()
    assert store.holding_run_ids() == set()


def test_a_flushed_store_refuses_to_claim_until_its_limits_are_back(store):
    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    store.enqueue([Entry("a", "q", NOW)])
    store.flush()
    store.enqueue([Entry("b", "q", NOW)])
    with pytest.raises(StoreNotConfiguredError):
        store.claim(NOW, max_count=5, lease_seconds=LEASE)
    store.set_environment_limits(EnvironmentLimits())
    assert claim(store) == ["b"]


def test_a_slot_belongs_to_the_attempt_its_entry_was_queued_for(store):
    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    store.enqueue([Entry("r", "q", NOW, attempt=2)])
    [won] = store.claim(NOW, max_count=5, lease_seconds=LEASE)
    assert won.attempt == 2
    # Attempt 1 of the same run, late: its heartbeat and release touch nothing.
    assert store.heartbeat("r", NOW, LEASE, attempt=1) is False
    assert store.release("r", attempt=1) is False
    assert store.holding_run_ids() == {"r"}
    assert [c.attempt for c in store.expired_leases(NOW + LEASE + 1)] == [2]
    assert store.heartbeat("r", NOW, LEASE, attempt=2) is True
    assert store.release("r", attempt=2) is True
    assert store.holding_run_ids() == set()


def test_a_release_naming_no_attempt_frees_whichever_holds_the_slot(store):
    store.enqueue([Entry("r", "q", NOW, attempt=3)])
    claim(store)
    assert store.release("r") is True
    assert store.holding_run_ids() == set()


def test_an_adopted_slot_belongs_to_the_attempt_named(store):
    from trigger_celery.coordination.base import Claim

    store.adopt(Claim("r", "q", None, NOW + LEASE, attempt=4))
    assert store.release("r", attempt=3) is False
    assert store.heartbeat("r", NOW, LEASE, attempt=4) is True


def test_concurrent_claimers_never_exceed_the_limit(store):
    from django.db import connection

    store.configure_queue(QueueConfig("q", concurrency_limit=3))
    store.enqueue([Entry(f"r{i:03d}", "q", NOW - 100 + i) for i in range(60)])
    lock = threading.Lock()
    holding: set[str] = set()
    peak = 0
    finished = 0
    errors: list[BaseException] = []

    def worker() -> None:
        nonlocal peak, finished
        try:
            rng = random.Random()
            while True:
                got = claim(store, n=1)
                if not got:
                    with lock:
                        if finished >= 60:
                            return
                    time.sleep(0.001)
                    continue
                with lock:
                    holding.update(got)
                    peak = max(peak, len(holding))
                time.sleep(rng.random() * 0.003)
                with lock:
                    holding.difference_update(got)
                    finished += len(got)
                for run_id in got:
                    store.release(run_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert finished == 60
    assert 1 <= peak <= 3
    assert store.holding_run_ids() == set()


def test_adopt_holds_a_slot_for_a_run_the_store_forgot(store):
    from trigger_celery.coordination.base import Claim

    store.configure_queue(QueueConfig("q", concurrency_limit=1))
    store.adopt(Claim("running", "q", None, NOW + LEASE))
    store.adopt(Claim("running", "q", None, NOW + LEASE))  # idempotent
    assert store.holding_run_ids() == {"running"}
    store.enqueue([Entry("next", "q", NOW)])
    assert claim(store) == []  # the adopted slot counts against the limit
    assert [c.run_id for c in store.expired_leases(NOW + LEASE + 1)] == ["running"]
    store.release("running")
    assert claim(store) == ["next"]
