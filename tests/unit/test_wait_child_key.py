"""The child a ``trigger_and_wait`` step triggers is keyed by (parent run, step) unless
the user gives a key of their own; ``idempotency_key=None`` is no key of their own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.contexts import a_context
from trigger_celery.core import context as run_context
from trigger_celery.engine.idempotency import IdempotencyKey
from trigger_celery.worker import waits


class Triggered(Exception):
    """Stands for the trigger: the test ends the wait there, before any write."""


@pytest.fixture
def triggered(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[dict[str, Any], bool]]]:
    """The options and ``key_is_new`` each trigger of a first execution's step got."""
    ctx = a_context("run_parent", "parent")
    calls: list[tuple[dict[str, Any], bool]] = []

    def trigger_task(task_id, payload, options, extra, *, definition, key_is_new):
        calls.append((dict(options), key_is_new))
        raise Triggered

    monkeypatch.setattr(waits, "trigger_task", trigger_task)
    token = run_context.enter(run_context.RunScope(ctx, step=2, fresh=True))
    try:
        yield calls
    finally:
        run_context.leave(token)


@pytest.mark.parametrize("options", [{}, {"idempotency_key": None}], ids=["left-out", "None"])
def test_a_child_without_a_key_of_the_users_gets_the_steps_own(triggered, options):
    with pytest.raises(Triggered):
        waits.trigger_and_wait("echo", {"n": 1}, {**options, "tags": ["t"]})
    ((opts, key_is_new),) = triggered
    assert opts == {"idempotency_key": waits._child_key("run_parent", 2), "tags": ["t"]}
    assert isinstance(opts["idempotency_key"], IdempotencyKey)
    assert key_is_new is True  # a first execution: no run holds the step's key yet


def test_a_key_of_the_users_names_the_child(triggered):
    with pytest.raises(Triggered):
        waits.trigger_and_wait("echo", {"n": 1}, {"idempotency_key": "mine"})
    assert triggered == [({"idempotency_key": "mine"}, False)]
