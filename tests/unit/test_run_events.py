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


def test_a_batch_reaches_a_many_listener_in_one_call_and_the_others_run_by_run(caplog):
    one_by_one: list[tuple[str, str]] = []
    together: list[tuple[list[str], str]] = []

    def single(run_id: str, event: str) -> None:
        one_by_one.append((run_id, event))

    def counted(run_id: str, event: str) -> None:
        raise AssertionError("a many listener gets a batch in one call")

    def broken_many(run_ids: list[str], event: str) -> None:
        together.append((run_ids, event))
        raise RuntimeError("many bug")

    run_events.subscribe(single)
    run_events.subscribe(counted, many=broken_many)
    try:
        with caplog.at_level(logging.WARNING, logger="trigger_celery.run_events"):
            run_events.publish_many(["run_1", "run_2"], run_events.TRIGGERED)
            run_events.publish_many([], run_events.TRIGGERED)
    finally:
        run_events.unsubscribe(single)
        run_events.unsubscribe(counted)
    assert one_by_one == [("run_1", "TRIGGERED"), ("run_2", "TRIGGERED")]
    assert together == [(["run_1", "run_2"], "TRIGGERED")]
    assert "many bug" in caplog.text
    run_events.subscribe(counted)  # unsubscribed: its many form is forgotten too
    try:
        with caplog.at_level(logging.WARNING, logger="trigger_celery.run_events"):
            run_events.publish_many(["run_3"], run_events.TRIGGERED)
    finally:
        run_events.unsubscribe(counted)
    assert len(together) == 1
