"""The attempt monitor: its lines about a run carry the run's fields, though its thread
is outside the run's scope (SPEC 12); an overdue lease is looked up only when overdue."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from django.db import DatabaseError

from tests.unit.contexts import a_context
from trigger_celery.models import Run
from trigger_celery.worker import abandon
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
    assert AttemptMonitor().after_return(_watched(renewed_ago=0.0)) is None


def test_an_overdue_lease_with_the_database_down_leaves_it_to_the_fenced_writes(monkeypatch):
    def unreachable(*args, **kwargs):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(Run.objects, "filter", unreachable)
    assert AttemptMonitor().after_return(_watched(renewed_ago=3600.0)) is None


def test_a_late_children_cancel_that_fails_is_tried_again_after_a_pause_not_every_tick(
    monkeypatch,
):
    tries = []
    monkeypatch.setattr(
        abandon, "cancel_late_children", lambda w, retried=False: bool(tries.append(1))
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
    monkeypatch.setattr(abandon, "cancel_late_children", lambda w, retried=False: True)
    watched.sweep_again_at = 0.0
    monitor._swept(watched)
    watched.sweeper.join()
    assert monitor._swept(watched) is True


class _Row:
    """What ``Run.objects.filter(...).values_list(...).first()`` gives, without a database."""

    def __init__(self, row):
        self.row = row

    def values_list(self, *fields):
        return self

    def first(self):
        return self.row


def _in_a_run_scope():
    from trigger_celery.core import context as run_context

    scope = run_context.RunScope(a_context("run_y"))
    return run_context.enter(scope), run_context


@pytest.fixture
def record_factory_restored(monkeypatch):
    """log_fields.install() wraps the process's log record factory: undone after."""
    import logging

    from trigger_celery.worker import log_fields

    factory = logging.getLogRecordFactory()
    monkeypatch.setattr(log_fields, "_installed", log_fields._installed)
    yield log_fields
    logging.setLogRecordFactory(factory)


def test_an_overdue_lease_whose_run_moved_on_is_said_inside_the_runs_scope(
    monkeypatch, caplog, record_factory_restored
):
    """after_return runs in the attempt's own thread, in the run's scope, whose record
    factory sets the run's fields already: the line must not set them again (logging
    refused it with a KeyError, and the worker logged a traceback instead)."""
    record_factory_restored.install()
    monkeypatch.setattr(Run.objects, "filter", lambda **kw: _Row(("QUEUED", 2)))
    token, run_context = _in_a_run_scope()
    try:
        with caplog.at_level("WARNING", logger="trigger_celery.monitor"):
            assert AttemptMonitor().after_return(_watched(renewed_ago=3600.0)) == "moved on"
    finally:
        run_context.leave(token)
    [line] = caplog.records
    assert "ended after its run moved on (QUEUED)" in line.getMessage()
    assert (line.trigger_run_id, line.trigger_attempt) == ("run_y", 1)


def _returned(reasons: list) -> Watched:
    watched = _watched(renewed_ago=3600.0)
    watched.ctx = SimpleNamespace(signal=SimpleNamespace(set=reasons.append))
    with watched.lock:
        watched.done = True
    return watched


def test_an_overdue_lease_whose_run_was_canceled_in_it_is_canceled_once(monkeypatch):
    """The cancel never reached the attempt (a stalled store held the monitor's passes
    up): it is the attempt's stop now, claimed once whoever asks."""
    monkeypatch.setattr(Run.objects, "filter", lambda **kw: _Row(("CANCELED", 1)))
    reasons = []
    watched = _returned(reasons)
    assert AttemptMonitor().after_return(watched) == "canceled"
    assert (watched.reason, reasons) == ("canceled", ["canceled"])
    assert AttemptMonitor().after_return(watched) is None  # claimed already: not twice
    # The monitor's own pass, after the attempt returned, leaves it to the settle.
    assert monitor_module.claim_stop(watched, "canceled") is False


def test_an_attempt_canceled_unseen_is_settled_as_canceled_with_its_hooks(monkeypatch):
    """What attempt.execute settles: not the output of the code that ran on unaware
    (no on_success for a CANCELED run), but the cancel, after its on_cancel hooks."""
    from trigger_celery.errors import RunCanceledError
    from trigger_celery.worker import attempt
    from trigger_celery.worker.user_code import Completed, Failed

    monkeypatch.setattr(Run.objects, "filter", lambda **kw: _Row(("CANCELED", 1)))
    hooks = []
    monkeypatch.setattr(attempt, "call_cancel_hooks", lambda *a, **kw: hooks.append(a))
    run = SimpleNamespace(max_duration=None)
    outcome = attempt._settled_outcome(_returned([]), Completed({"charged": True}), run)
    assert isinstance(outcome, Failed) and isinstance(outcome.error, RunCanceledError)
    assert len(hooks) == 1
    monkeypatch.setattr(Run.objects, "filter", lambda **kw: _Row(("QUEUED", 2)))
    assert attempt._settled_outcome(_returned([]), Completed(1), run) is None  # moved on
    monkeypatch.setattr(Run.objects, "filter", lambda **kw: _Row(("EXECUTING", 1)))
    kept = Completed(1)
    assert attempt._settled_outcome(_returned([]), kept, run) is kept


def test_a_deadline_that_passes_after_the_code_returned_does_not_stop_it():
    """Its settle is under way with the code's outcome: a max_duration reason set now
    would turn a completed run into TIMED_OUT."""
    reasons = []
    watched = _returned(reasons)
    watched.deadline = time.monotonic() - 1
    AttemptMonitor()._deadlines([watched], time.monotonic())
    assert (watched.reason, reasons) == (None, [])


def test_a_store_that_stalls_every_heartbeat_does_not_keep_cancels_from_being_polled(
    monkeypatch,
):
    """A reachable Redis that does not answer: each heartbeat waits out its socket
    timeout and fails. The cancels are in the database, and are still polled (they were
    not: the failed heartbeat ended the whole pass, every pass)."""
    import redis

    settings = SimpleNamespace(HEARTBEAT_SECONDS=0.0, LEASE_SECONDS=30.0)
    monkeypatch.setattr(monitor_module, "get_settings", lambda: settings)
    monitor = AttemptMonitor()
    beats, polls = [], []

    def stalled(watched, lease_seconds):
        beats.append(1)
        time.sleep(0.3)
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(monitor, "_heartbeat", stalled)
    monkeypatch.setattr(monitor, "_poll_cancels", lambda watched: polls.append(1))
    monitor.watch(_watched(renewed_ago=0.0))
    try:
        deadline = time.monotonic() + 10
        while not polls and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        monitor._stopped.set()  # its thread ends
    assert beats and polls
