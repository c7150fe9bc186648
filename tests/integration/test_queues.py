"""Queues, global concurrency limits, fairness, pause and routing (SPEC 4)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import Min

from tests.integration.harness import finished, max_overlap, wait_for
from tests.taskapp import events
from trigger_celery import queues, runs, tasks
from trigger_celery.errors import ConfigurationError
from trigger_celery.models import Run

pytestmark = pytest.mark.integration


def intervals(tag: str) -> list[tuple[float, float]]:
    return [(v[2], v[3]) for v in events.values(f"interval:{tag}")]


def all_finished(handles, timeout: float = 60.0) -> list:
    ids = [h.id for h in handles]
    wait_for(
        lambda: Run.objects.filter(id__in=ids, status="COMPLETED").count() == len(ids),
        timeout=timeout,
        what=f"{len(ids)} runs to complete",
    )
    return [runs.retrieve(h) for h in handles]


def test_limit_2_queue_runs_exactly_two_at_a_time_across_two_worker_nodes(own):
    own.worker(concurrency=4)
    own.worker(concurrency=4)
    own.beat()
    handles = [tasks.trigger("limited-2", {"tag": "l2", "seconds": 0.4}) for _ in range(16)]
    all_finished(handles)
    spans = intervals("l2")
    assert len(spans) == 16
    assert max_overlap(spans) == 2  # two at a time, never three (no wall-clock measure)


def test_two_tasks_sharing_a_limit_1_queue_never_overlap(live):
    handles = [
        tasks.trigger(t, {"tag": "shared", "seconds": 0.1}) for t in ["shared-a", "shared-b"] * 4
    ]
    all_finished(handles)
    assert max_overlap(intervals("shared")) == 1


def test_concurrency_keys_run_side_by_side_but_never_two_of_one_key(live):
    handles = [
        tasks.trigger("per-key", {"tag": "keys", "seconds": 0.3}, concurrency_key=f"tenant-{k}")
        for _ in range(3)
        for k in "abc"
    ]
    all_finished(handles)
    spans = events.values("interval:keys")
    assert max_overlap([(v[2], v[3]) for v in spans]) == 3
    for key in ("tenant-a", "tenant-b", "tenant-c"):
        assert max_overlap([(v[2], v[3]) for v in spans if v[1] == key]) == 1


def test_a_total_limit_caps_every_key_together(live):
    handles = [
        tasks.trigger("tenant-work", {"tag": "total", "seconds": 0.3}, concurrency_key=f"t-{k}")
        for _ in range(3)
        for k in "abc"
    ]
    all_finished(handles)
    spans = events.values("interval:total")
    assert max_overlap([(v[2], v[3]) for v in spans]) == 2  # three keys could run, two may
    for key in ("t-a", "t-b", "t-c"):
        assert max_overlap([(v[2], v[3]) for v in spans if v[1] == key]) == 1


def test_a_quiet_key_starts_promptly_while_a_busy_key_has_20_queued(live):
    # Each busy run lasts long enough that a loaded machine's trigger -> start of the
    # quiet run (well under a busy run) cannot let two more busy runs start first.
    busy = [
        tasks.trigger("per-key", {"tag": "fair", "seconds": 0.4}, concurrency_key="busy")
        for _ in range(20)
    ]
    wait_for(lambda: len(events.values("start:fair")) >= 1, what="the busy key to start")
    quiet = tasks.trigger("per-key", {"tag": "fair", "seconds": 0.1}, concurrency_key="quiet")
    all_finished([*busy, quiet])
    starts = [v[0] for v in sorted(events.values("start:fair"), key=lambda v: v[2])]
    # Each key has its own slot: the quiet run never waits behind the busy backlog.
    assert starts.index(quiet.id) <= 2


def test_priority_orders_starts_within_a_busy_queue(live):
    blocker = tasks.trigger("prio", {"tag": "prio", "seconds": 1.0})
    wait_for(lambda: events.values("start:prio"), what="the blocker to start")
    low = tasks.trigger("prio", {"tag": "prio", "seconds": 0.05}, priority=0)
    high = tasks.trigger("prio", {"tag": "prio", "seconds": 0.05}, priority=10)
    mid = tasks.trigger("prio", {"tag": "prio", "seconds": 0.05}, priority=5)
    all_finished([blocker, low, high, mid])
    order = [v[0] for v in sorted(events.values("start:prio"), key=lambda v: v[2])]
    assert order == [blocker.id, high.id, mid.id, low.id]


def test_a_rate_limit_holds_on_starts_when_dispatched_runs_wait_for_busy_workers(own):
    own.worker(concurrency=2)
    own.beat()
    busy = [tasks.trigger("sleepy", {"tag": "busy", "seconds": 3}) for _ in range(2)]
    wait_for(
        lambda: Run.objects.filter(id__in=[h.id for h in busy], status="EXECUTING").count() == 2,
        what="both worker processes to be busy",
    )
    rated = [tasks.trigger("rated", {}) for _ in range(8)]
    all_finished(busy + rated)
    busy_ended = Run.objects.filter(id__in=[h.id for h in busy]).aggregate(m=Min("finished_at"))
    starts = sorted(
        Run.objects.filter(id__in=[h.id for h in rated]).values_list("started_at", flat=True)
    )
    # The worker was busy when the first rated runs were dispatched: they started late.
    assert starts[0] >= busy_ended["m"]
    # "4/s": any five consecutive starts span at least a second, wherever dispatch was.
    assert all(b - a >= timedelta(seconds=1) for a, b in zip(starts, starts[4:], strict=False))


def test_environment_limit_with_burst_across_queues(own):
    env = {"TC_CONCURRENCY_LIMIT": "2", "TC_BURST_FACTOR": "1.5"}
    from django.test import override_settings

    from tests import settings as test_settings

    config = {**test_settings.TRIGGER_CELERY, "CONCURRENCY_LIMIT": 2, "BURST_FACTOR": 1.5}
    from trigger_celery.engine import queueing

    with override_settings(TRIGGER_CELERY=config):
        queueing.reset_caches()
        own.worker(concurrency=6, env=env)
        own.beat(env=env)
        handles = [
            tasks.trigger(t, {"tag": "env", "seconds": 0.3})
            for t in ["env-a", "env-b", "env-c"] * 4
        ]
        all_finished(handles)
    queueing.reset_caches()
    spans = events.values("interval:env")
    by_run = {r.id: r.task_identifier for r in Run.objects.filter(id__in=[h.id for h in handles])}
    assert max_overlap([(v[2], v[3]) for v in spans]) == 3  # floor(2 x 1.5)
    for task_id in ("env-a", "env-b", "env-c"):
        assert max_overlap([(v[2], v[3]) for v in spans if by_run[v[0]] == task_id]) <= 2


def test_paused_queue_starts_nothing_until_resumed(live):
    queues.pause("shared-1")
    try:
        handle = tasks.trigger("shared-a", {"tag": "paused", "seconds": 0.05})
        info = queues.retrieve("shared-1")
        assert info.paused and info.queued == 1 and info.executing == 0
        # The shared beat keeps dispatching other queues meanwhile.
        other = tasks.trigger("hello-world", {"message": "still running"})
        all_finished([other])
        assert Run.objects.get(id=handle.id).status == "QUEUED"
    finally:
        queues.resume("shared-1")
    all_finished([handle])


def test_a_paused_queue_a_deploy_removed_from_the_code_is_listed_and_can_be_resumed(
    live, admin_client
):
    """Its runs waited for good: the API, the admin and the dashboard offered only the
    queues declared in code, and resuming it raised ConfigurationError."""
    from django.urls import reverse

    from trigger_celery.engine.registry import registry

    queues.pause("shared-1")
    handle = tasks.trigger("shared-a", {"tag": "left-behind", "seconds": 0.05})
    declared = registry.queues.pop("shared-1")  # the deploy that removed the queue
    try:
        [info] = [q for q in queues.list() if q.name == "shared-1"]
        assert info.paused and not info.declared and info.queued == 1
        assert info.concurrency_limit is None
        page = admin_client.get(reverse("trigger_celery:queue-list")).content.decode()
        assert "not declared in code" in page
        resume = reverse("trigger_celery:queue-action", args=["shared-1", "resume"])
        assert admin_client.post(resume).status_code == 302
        assert not queues.retrieve("shared-1").paused
        all_finished([handle])
        with pytest.raises(ConfigurationError, match="not declared in code"):
            queues.pause("never-declared-anywhere")
    finally:
        registry.queues["shared-1"] = declared
        queues.resume("shared-1")


def test_pause_and_resume_hold_when_the_store_is_unreachable(live, settings):
    """The pause is a row: with the store down the call still succeeds (it did raise, with
    the row already committed), and reconcile gives the store the row's word later."""
    from trigger_celery.coordination.factory import reset_store_cache
    from trigger_celery.models import QueueState

    settings.TRIGGER_CELERY = {**settings.TRIGGER_CELERY, "REDIS_URL": "redis://127.0.0.1:1/0"}
    reset_store_cache()
    try:
        with pytest.raises(Exception):  # noqa: B017  the fault is real: nothing listens there
            from trigger_celery.coordination.factory import get_store

            get_store().stats()
        queues.pause("shared-1")
        assert QueueState.objects.get(name="shared-1").paused
        queues.resume("shared-1")
        assert not QueueState.objects.get(name="shared-1").paused
        queues.override_limit("shared-1", 2)
        queues.reset_limit("shared-1")
    finally:
        reset_store_cache()


class RolledBack(Exception):
    pass


def test_a_pause_or_resume_whose_transaction_rolled_back_changes_nothing(live):
    """An ATOMIC_REQUESTS view that paused a queue and then failed: the row was rolled
    back, the store kept the pause, every page said "not paused", runs waited for good
    and no reconcile resumed it. A rolled-back resume likewise ran a paused queue."""
    from django.db import transaction

    from trigger_celery.coordination.factory import get_store
    from trigger_celery.engine import recovery

    store = get_store()
    try:
        with pytest.raises(RolledBack), transaction.atomic():
            queues.pause("shared-1")
            assert not store.is_paused("shared-1")  # not before the commit
            raise RolledBack
        assert not queues.retrieve("shared-1").paused and not store.is_paused("shared-1")
        all_finished([tasks.trigger("shared-a", {"tag": "after-rollback", "seconds": 0.01})])

        queues.pause("shared-1")
        assert store.is_paused("shared-1")  # committed: applied
        with pytest.raises(RolledBack), transaction.atomic():
            queues.resume("shared-1")
            raise RolledBack
        assert queues.retrieve("shared-1").paused and store.is_paused("shared-1")

        # A pause in the store alone (as that rolled-back one left it, by an older
        # version): reconcile resumes it, as the database says.
        queues.resume("shared-1")
        store.set_paused("shared-1", True)
        recovery.reconcile()
        assert not store.is_paused("shared-1")
    finally:
        queues.resume("shared-1")


def test_live_counts_per_queue_and_key(live):
    blocker = tasks.trigger("per-key", {"tag": "counts", "seconds": 1.0}, concurrency_key="k1")
    waiting = tasks.trigger("per-key", {"tag": "counts", "seconds": 0.05}, concurrency_key="k1")
    wait_for(lambda: events.values("start:counts"), what="the first run to start")
    info = queues.retrieve("per-key-1")
    assert info.concurrency_limit == 1
    assert info.keys["k1"] == (1, 1)
    assert (info.queued, info.executing) == (1, 1)
    all_finished([blocker, waiting])
    assert queues.retrieve("per-key-1").executing == 0


def test_bad_queue_options_are_clear_errors(live):
    with pytest.raises(ConfigurationError, match="'nope' is not declared"):
        tasks.trigger("hello-world", {}, queue="nope")
    with pytest.raises(ValueError, match="concurrency_key"):
        tasks.trigger("hello-world", {}, concurrency_key=4.2)  # an int is its string
    with pytest.raises(ValueError, match="machine"):
        tasks.trigger("hello-world", {}, machine="xxl")
    assert not Run.objects.exists()


def test_a_run_no_worker_serves_expires_at_its_ttl(own):
    own.worker(concurrency=1)  # the default Celery queue only: nobody serves large-1x
    own.beat()
    handle = tasks.trigger("hello-world", {"message": "big"}, machine="large-1x", ttl="2s")
    wait_for(lambda: runs.retrieve(handle).status == "DEQUEUED", what="the run to be sent")
    run = wait_for(
        lambda: (r := runs.retrieve(handle)).status == "EXPIRED" and r,
        what="the unserved run to expire",
    )
    assert run.started_at is None
    assert queues.retrieve("hello-world").executing == 0  # its slot is back


def test_machine_preset_routes_to_its_celery_queue(own):
    own.worker(concurrency=1, queues="machine.large-1x")
    own.beat()
    handle = tasks.trigger("hello-world", {"message": "big"}, machine="large-1x")
    [run] = all_finished([handle])
    assert run.machine == "large-1x"
    assert run.attempts[0].status == "COMPLETED"


def test_runs_go_to_the_queue_the_celery_app_renamed_its_default_to(own, settings):
    """A project that set CELERY_TASK_DEFAULT_QUEUE: its workers consume that queue, and
    runs go there (TRIGGER_CELERY['CELERY_QUEUE'] unset)."""
    settings.CELERY_TASK_DEFAULT_QUEUE = "team-default"  # this process triggers
    own.worker(queues="team-default", env={"TC_CELERY_QUEUE": "team-default"})
    handles = [tasks.trigger("echo", {"n": n}) for n in range(3)]
    assert all(finished(h).status == "COMPLETED" for h in handles)


def test_a_rate_limit_declared_only_where_runs_are_triggered_still_holds(own):
    """The worker's code does not declare the queue (only the triggering process does):
    its starts are dated all the same, so the store's "4/s" holds (it let all start)."""
    from trigger_celery import queue
    from trigger_celery.engine.registry import registry

    name = "rated-here-only"
    queue(name=name, rate_limit="4/s")
    try:
        own.worker(concurrency=4)
        own.beat()
        handles = [tasks.trigger("echo", {}, queue=name) for _ in range(9)]
        all_finished(handles)
    finally:
        registry.queues.pop(name, None)
        registry._declared.discard(name)
    starts = sorted(
        Run.objects.filter(id__in=[h.id for h in handles]).values_list("started_at", flat=True)
    )
    assert all(b - a >= timedelta(seconds=1) for a, b in zip(starts, starts[4:], strict=False))
