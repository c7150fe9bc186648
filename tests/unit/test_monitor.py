"""The attempt monitor: its lines about a run carry the run's fields, though its thread
is outside the run's scope (SPEC 12); an overdue lease is looked up only when overdue."""

from __future__ import annotations

import time
from types import SimpleNamespace

from django.db import DatabaseError

from trigger_celery.models import Run
from trigger_celery.worker import monitor as monitor_module
from trigger_celery.worker.monitor import AttemptMonitor, Watched


def test_a_lost_lease_is_logged_with_the_runs_fields(caplog):
    signal = SimpleNamespace(set=lambda reason: None)
    watched = Watched(
        run_id="run_x",
        attempt=2,
        thread_id=0,
        ctx=SimpleNamespace(signal=signal),
        definition=SimpleNamespace(id="nightly-report"),
        deadline=None,
    )
    with caplog.at_level("WARNING", logger="trigger_celery.monitor"):
        AttemptMonitor()._lost(watched)
    [line] = caplog.records
    assert "lost its lease" in line.getMessage()
    fields = (line.trigger_run_id, line.trigger_task_id, line.trigger_attempt)
    assert fields == ("run_x", "nightly-report", 2)


def _watched(renewed_ago: float) -> Watched:
    return Watched(
        run_id="run_y",
        attempt=1,
        thread_id=0,
        ctx=SimpleNamespace(signal=SimpleNamespace(set=lambda reason: None)),
        definition=SimpleNamespace(id="t"),
        deadline=None,
        renewed_at=time.monotonic() - renewed_ago,
    )


def test_a_recently_renewed_lease_is_not_looked_up():
    # No database here (a unit test): asking the row would raise.
    assert AttemptMonitor().lease_overdue(_watched(renewed_ago=0.0)) is False


def test_an_overdue_lease_with_the_database_down_leaves_it_to_the_fenced_writes(monkeypatch):
    def unreachable(*args, **kwargs):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(Run.objects, "filter", unreachable)
    assert AttemptMonitor().lease_overdue(_watched(renewed_ago=3600.0)) is False


def test_a_late_children_cancel_that_fails_is_tried_again_after_a_pause_not_every_tick(
    monkeypatch,
):
    tries = []
    monkeypatch.setattr(
        monitor_module, "_cancel_late_children", lambda w, retried=False: bool(tries.append(1))
    )
    watched = _watched(renewed_ago=0.0)
    monitor = AttemptMonitor()
    for _ in range(30):  # three seconds of ticks, with the database down
        assert monitor._swept(watched) is False
        watched.sweeper.join()
        if len(tries) == 1:
            watched.sweep_again_at -= monitor_module.SWEEP_RETRY_SECONDS  # the pause passes
            assert monitor._swept(watched) is False
            watched.sweeper.join()
    assert len(tries) == 2
    monkeypatch.setattr(monitor_module, "_cancel_late_children", lambda w, retried=False: True)
    watched.sweep_again_at = 0.0
    monitor._swept(watched)
    watched.sweeper.join()
    assert monitor._swept(watched) is True
