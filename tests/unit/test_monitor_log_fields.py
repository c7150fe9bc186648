"""The attempt monitor's lines about a run carry the run's fields, though its thread is
outside the run's scope (SPEC 12)."""

from __future__ import annotations

from types import SimpleNamespace

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
