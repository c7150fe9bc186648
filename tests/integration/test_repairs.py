"""The repair sweep (``engine/repairs.py``) against rows written directly: no worker."""

from __future__ import annotations

import pytest

from trigger_celery.engine import repairs
from trigger_celery.models import Batch, Run, Waitpoint

pytestmark = pytest.mark.integration


def _run(run_id: str, status: str, **fields) -> Run:
    return Run.objects.create(
        id=run_id,
        task_identifier="echo",
        status=status,
        environment="PRODUCTION",
        queue="echo",
        max_attempts=3,
        attempt_count=1,  # each has started once
        payload={},
        **fields,
    )


def _listed_wait(n: int, item_status: str) -> Waitpoint:
    parent = _run(f"run_parent{n}", "WAITING")
    batch = Batch.objects.create(id=f"batch_{n}", environment="PRODUCTION", run_count=1)
    # The item's key found a run of another batch: the wait lists it.
    item = _run(f"run_item{n}", item_status)
    return Waitpoint.objects.create(
        run=parent,
        step=1,
        kind=Waitpoint.Kind.BATCH,
        label="echo",
        batch=batch,
        item_runs=[item.id],
    )


def test_the_sweep_goes_round_every_wait_on_keyed_items_however_many_wait(db, monkeypatch):
    """Waits on keyed items are checked by the sweep (the end of a run of another batch
    does not look at them). With more pending than one sweep takes, the sweeps go on
    where the last stopped: the first ones, still waiting, kept the next one waiting
    after its runs had ended."""
    monkeypatch.setattr(repairs, "_listed_after", 0, raising=False)
    waiting = [_listed_wait(n, "EXECUTING") for n in range(1, 4)]
    # Made last (the next sweep's turn), its parent's id sorting after the others'.
    ready = _listed_wait(0, "COMPLETED")
    for _ in range(2):
        repairs.complete_finished_batches(limit=2)
    ready.refresh_from_db()
    assert ready.completed_at is not None
    assert ready.result[0]["ok"] is True and ready.result[0]["id"] == "run_item0"
    assert all(Waitpoint.objects.get(id=w.id).completed_at is None for w in waiting)


class _ProgramLimitExceeded(Exception):
    sqlstate = "54000"


def test_a_batch_wait_the_database_refuses_holds_back_neither_other_repairs_nor_the_pump(
    transactional_db, monkeypatch, caplog
):
    """A batch whose results make a value the database refuses (PostgreSQL: "total size
    of jsonb array elements exceeds the maximum"): the failing repair was in the pump's one
    ``try``, so every pass stopped there, and no delayed run started, no timed wait
    ended, no lease was reaped, for the whole deployment."""
    from datetime import timedelta

    from django.db import OperationalError

    from trigger_celery.core import clock
    from trigger_celery.engine import waitpoints
    from trigger_celery.engine.pump import Pump

    poisoned = _run("run_poisoned", "WAITING")
    batch = Batch.objects.create(id="batch_poisoned", environment="PRODUCTION", run_count=1)
    _run("run_poisoned_item", "COMPLETED", batch=batch, batch_index=0)
    Waitpoint.objects.create(run=poisoned, step=0, kind="BATCH", label="echo", batch=batch)
    healthy = _run("run_healthy", "WAITING")
    child = _run("run_healthy_child", "COMPLETED", output={"ok": 1})
    Waitpoint.objects.create(run=healthy, step=0, kind="RUN", label="echo", child_run=child)
    delayed = _run("run_due", "DELAYED", delayed_until=clock.now() - timedelta(seconds=5))
    real = waitpoints.complete_waitpoint

    def refused(waitpoint_id, result, **kwargs):
        if isinstance(result, list):  # the batch's: psycopg's ProgramLimitExceeded, 54000,
            err = OperationalError("total size of jsonb array elements exceeds the maximum")
            err.__cause__ = _ProgramLimitExceeded()  # which Django raises as this
            raise err
        return real(waitpoint_id, result, **kwargs)

    monkeypatch.setattr(waitpoints, "complete_waitpoint", refused)
    Pump().tick()
    # Queued, and dispatched in that pass too: a worker of an earlier test may run it.
    assert Run.objects.get(id=delayed.id).status != "DELAYED"  # the pass went on
    assert Run.objects.get(id=healthy.id).status != "WAITING"  # the sweep went on
    assert Run.objects.get(id=poisoned.id).status == "WAITING"
    assert "the wait on batch batch_poisoned could not be repaired" in caplog.text


def test_batch_results_past_the_inline_budget_leave_their_outputs_in_the_runs(db, monkeypatch):
    from trigger_celery.engine import waitpoints

    monkeypatch.setattr(waitpoints, "BATCH_RESULT_INLINE", 100)
    parent = _run("run_budget_parent", "WAITING")
    batch = Batch.objects.create(id="batch_budget", environment="PRODUCTION", run_count=3)
    for i, output in enumerate(["a" * 60, "b" * 60, None]):
        _run(f"run_budget_{i}", "COMPLETED", batch=batch, batch_index=i, output=output)
    Run.objects.filter(id="run_budget_2").update(status="FAILED", error={"type": "E"})
    wp = Waitpoint.objects.create(run=parent, step=0, kind="BATCH", label="echo", batch=batch)
    waitpoints.complete_batch_if_done(batch.id)
    wp.refresh_from_db()
    # The first fits in 100 bytes, the second would not: it stays in its run.
    assert [bool(r.get("output_in_run")) for r in wp.result] == [False, True, False]
    assert "b" * 60 not in str(wp.result)
    results = waitpoints.with_outputs(wp.result)
    assert [(r.ok, r.output) for r in results] == [
        (True, "a" * 60),
        (True, "b" * 60),
        (False, None),
    ]
    assert results[2].error == {"type": "E"}
