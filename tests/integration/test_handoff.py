"""The worker that frees a slot starts the run that gets it itself, without a message
(``worker.handoff``); the run is fenced, limited and recovered exactly like a sent one."""

from __future__ import annotations

import re

import pytest
from celery import current_app

from tests.integration.harness import max_overlap, wait_for
from tests.taskapp import events
from trigger_celery import tasks
from trigger_celery.coordination.factory import get_store
from trigger_celery.core.statuses import RunStatus
from trigger_celery.engine import transitions
from trigger_celery.models import Run, Waitpoint
from trigger_celery.worker import handoff
from trigger_celery.worker.attempt import execute, execute_kept

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_store")]


def statuses(*handles) -> list[str]:  # type: ignore[no-untyped-def]
    status = dict(Run.objects.values_list("id", "status"))
    return [status[h.id] for h in handles]


def three_in_a_limit_1_queue():  # type: ignore[no-untyped-def]
    runs = [tasks.trigger("shared-a", {"tag": "handoff", "seconds": 0}) for _ in range(3)]
    assert statuses(*runs) == ["DEQUEUED", "QUEUED", "QUEUED"]
    assert current_app.control.purge() == 1  # only the first was sent
    return runs


def test_the_run_a_slot_goes_to_is_kept_and_started_without_a_message(own):
    first, second, third = three_in_a_limit_1_queue()
    with handoff.chain():
        assert execute(first.id, 1, worker="test") == "Completed"
        assert statuses(second, third) == ["DEQUEUED", "QUEUED"]
        assert handoff.take() == (second.id, 1)
        assert handoff.take() is None  # taken once
        assert execute(second.id, 1, worker="test") == "Completed"
        assert handoff.take() == (third.id, 1)
        assert execute(third.id, 1, worker="test") == "Completed"
        assert handoff.take() is None
    assert current_app.control.purge() == 0  # no message was sent for either
    assert statuses(first, second, third) == ["COMPLETED"] * 3
    assert not get_store().holding_run_ids() & {first.id, second.id, third.id}


def test_outside_a_chain_the_next_run_is_sent(own):
    first, second, _ = three_in_a_limit_1_queue()
    assert execute(first.id, 1, worker="test") == "Completed"
    assert handoff.take() is None
    assert statuses(second) == ["DEQUEUED"]
    assert current_app.control.purge() == 1


def test_a_chain_past_its_time_keeps_nothing(own, monkeypatch):
    monkeypatch.setattr(handoff, "CHAIN_SECONDS", 0.0)
    first, second, _ = three_in_a_limit_1_queue()
    with handoff.chain():
        assert execute(first.id, 1, worker="test") == "Completed"
        assert handoff.take() is None
    assert statuses(second) == ["DEQUEUED"]
    assert current_app.control.purge() == 1


def test_a_run_kept_when_the_chain_breaks_is_sent(own):
    first, second, _ = three_in_a_limit_1_queue()
    with pytest.raises(RuntimeError), handoff.chain():
        assert execute(first.id, 1, worker="test") == "Completed"
        raise RuntimeError("the message's process fails before it starts the kept run")
    assert statuses(second) == ["DEQUEUED"]
    assert current_app.control.purge() == 1
    assert second.id in get_store().holding_run_ids()


def test_a_run_for_another_celery_queue_is_sent_to_it(own):
    first = tasks.trigger("shared-a", {"tag": "handoff", "seconds": 0})
    big = tasks.trigger("shared-b", {"tag": "handoff", "seconds": 0}, machine="large-1x")
    current_app.control.purge()
    with handoff.chain():
        assert execute(first.id, 1, worker="test") == "Completed"
        assert handoff.take() is None
    assert statuses(big) == ["DEQUEUED"]
    with current_app.connection_for_read() as conn:
        waiting = conn.default_channel.client.llen("machine.large-1x")
    assert waiting == 1
    conn_purge_queue("machine.large-1x")


def conn_purge_queue(name: str) -> None:
    with current_app.connection_for_write() as conn:
        conn.default_channel.queue_purge(name)


def test_a_worker_runs_a_limit_1_queue_one_at_a_time_on_fewer_messages(own):
    handles = [tasks.trigger("shared-a", {"tag": "chain", "seconds": 0}) for _ in range(20)]
    worker = own.worker(concurrency=2)
    wait_for(
        lambda: (
            Run.objects.filter(id__in=[h.id for h in handles], status="COMPLETED").count() == 20
        ),
        timeout=60,
        what="20 runs of a limit-1 queue",
    )
    intervals = [(v[2], v[3]) for v in events.values("interval:chain")]
    assert len(intervals) == 20
    assert max_overlap(intervals) == 1
    received = re.findall(r"trigger_celery\.execute_run\[[^\]]+\] received", worker.log())
    # Each run's message is received once at most; the runs started by the worker that
    # freed their slot had none.
    assert 1 <= len(received) < 20, len(received)


def test_a_waiting_parent_and_its_child_share_a_limit_1_queue(own):
    own.worker(concurrency=1)
    handle = tasks.trigger("limited-parent", {"n": 41})
    wait_for(
        lambda: Run.objects.filter(id=handle.id, status="COMPLETED").exists(),
        timeout=60,
        what="the parent to complete",
    )
    assert Run.objects.get(id=handle.id).output == 83  # (41 * 2) + 1


def test_no_chain_under_a_celery_time_limit_or_process_recycling(monkeypatch):
    from trigger_celery.worker.celery_task import _no_chain, execute_run

    conf = execute_run.app.conf
    monkeypatch.setitem(conf, "task_time_limit", None)
    monkeypatch.setitem(conf, "task_soft_time_limit", None)
    assert not _no_chain(execute_run)
    monkeypatch.setitem(conf, "task_soft_time_limit", 60)
    assert _no_chain(execute_run)
    monkeypatch.setitem(conf, "task_soft_time_limit", None)
    monkeypatch.setitem(conf, "worker_max_tasks_per_child", 10)
    assert _no_chain(execute_run)
    monkeypatch.setitem(conf, "worker_max_tasks_per_child", None)
    monkeypatch.setattr(execute_run, "time_limit", 300)
    assert _no_chain(execute_run)


def test_a_parent_keeps_the_child_it_waits_on_and_the_child_keeps_the_parent(own):
    parent = tasks.trigger("wait-parent", {"n": 1})
    assert current_app.control.purge() == 1  # the parent's own message; started by hand
    with handoff.chain():
        assert execute(parent.id, 1, worker="test") == "Suspended"
        child_id = Run.objects.get(parent_id=parent.id).id
        assert statuses(parent) == ["WAITING"]
        kept = handoff.take()
        assert kept == (child_id, 1)  # kept, not sent
        assert execute(*kept, worker="test") == "Completed"
        resumed = handoff.take()
        assert resumed is not None and resumed[0] == parent.id  # the child's end resumed it
        assert execute(*resumed, worker="test") == "Completed"
        assert handoff.take() is None
    assert current_app.control.purge() == 0  # neither the child nor the resume was sent
    run = Run.objects.get(id=parent.id)
    assert run.output["ok"] and run.output["child_id"] == child_id
    assert not get_store().holding_run_ids() & {parent.id, child_id}


def test_a_kept_child_canceled_before_its_parent_waited_resumes_the_parent_at_once(own):
    parent = tasks.trigger("wait-parent", {"n": 1})
    assert current_app.control.purge() == 1
    with handoff.chain():
        assert execute(parent.id, 1, worker="test") == "Suspended"
        kept = handoff.take()
        assert kept is not None
        # The cancel of the child came between the parent's wait and its suspension
        # (what ``runs.cancel`` does, but its waitpoint lookup found nothing yet; the
        # suspension wrote the waitpoint after it).
        assert transitions.cancel(kept[0], RunStatus.DEQUEUED, 0)
        assert get_store().release(kept[0])
        assert Waitpoint.objects.pending().filter(run_id=parent.id).exists()
        assert execute_kept(*kept, worker="test") == "stale"
        # Completed by the kept run's end, not left to the next repair pass.
        assert not Waitpoint.objects.pending().filter(run_id=parent.id).exists()
        assert statuses(parent) == ["DEQUEUED"]  # resumed, and sent
        assert handoff.take() is None
    assert current_app.control.purge() == 1  # the parent's resume
    assert execute(parent.id, 1, worker="test") == "Completed"
    assert Run.objects.get(id=parent.id).output["ok"] is False  # the child was canceled


def test_outside_a_chain_the_child_is_sent(own):
    parent = tasks.trigger("wait-parent", {"n": 1})
    assert current_app.control.purge() == 1
    assert execute(parent.id, 1, worker="test") == "Suspended"
    assert handoff.take() is None
    assert current_app.control.purge() == 1  # the child's message


def test_a_batch_parent_keeps_one_child_and_sends_the_rest(own):
    parent = tasks.trigger("batch-parent", {"n": 3})
    assert current_app.control.purge() == 1
    with handoff.chain():
        assert execute(parent.id, 1, worker="test") == "Suspended"
        kept = handoff.take()
        children = set(
            Run.objects.filter(batch__parent_run_id=parent.id).values_list("id", flat=True)
        )
        assert kept is not None and kept[0] in children and len(children) == 3
        assert current_app.control.purge() == 2  # the two others were sent
        assert execute(*kept, worker="test") == "Completed"
    assert statuses(parent) == ["WAITING"]  # two children have not run


def test_a_worker_runs_a_parent_and_its_child_on_one_message(own):
    worker = own.worker(concurrency=1)
    handle = tasks.trigger("wait-parent", {"n": 2})
    wait_for(
        lambda: Run.objects.filter(id=handle.id, status="COMPLETED").exists(),
        timeout=60,
        what="the parent to complete",
    )
    child = Run.objects.get(parent_id=handle.id)
    assert child.status == "COMPLETED"
    assert Run.objects.get(id=handle.id).output["child_id"] == child.id
    received = re.findall(r"trigger_celery\.execute_run\[[^\]]+\] received", worker.log())
    assert len(received) == 1, received  # the parent's; the child and the resume had none
