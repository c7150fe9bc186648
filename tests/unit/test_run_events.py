"""Run events reach every listener once, and a failing listener breaks nothing."""

from __future__ import annotations

import logging

from trigger_celery.core import run_events


def test_each_listener_gets_each_event_once_and_a_failing_one_is_only_logged(caplog):
    seen: list[tuple[str, str]] = []

    def broken(run_id: str, event: str) -> None:
        raise RuntimeError("listener bug")

    run_events.subscribe(broken)
    run_events.subscribe(lambda r, e: seen.append((r, e)))
    listener = run_events._listeners[-1]
    run_events.subscribe(listener)  # twice: still once
    try:
        with caplog.at_level(logging.WARNING, logger="trigger_celery.run_events"):
            run_events.publish("run_1", run_events.TRIGGERED)
    finally:
        run_events.unsubscribe(broken)
        run_events.unsubscribe(listener)
    assert seen == [("run_1", "TRIGGERED")]
    assert "listener bug" in caplog.text
    run_events.publish("run_2", run_events.STARTED)
    assert seen == [("run_1", "TRIGGERED")]
