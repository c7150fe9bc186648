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
