"""Where every trigger learns its parent run: a run whose signal says canceled may not
trigger (its code ignored its stop); a signal set for another reason does not refuse."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.contexts import a_context
from trigger_celery.core import context as run_context
from trigger_celery.errors import RunCanceledError, TriggerFromCanceledRunError


@pytest.fixture
def scope() -> Iterator[run_context.RunScope]:
    here = run_context.RunScope(a_context())
    token = run_context.enter(here)
    try:
        yield here
    finally:
        run_context.leave(token)


def test_outside_a_run_a_trigger_has_no_parent():
    assert run_context.parent_scope("a run of 'echo'") is None


def test_a_running_run_is_the_parent(scope):
    assert run_context.parent_scope("a run of 'echo'") is scope


def test_a_canceled_run_is_refused_naming_it_and_what_it_triggered(scope, caplog):
    scope.ctx.signal.set("canceled")
    with (
        caplog.at_level("WARNING", logger="trigger_celery.run"),
        pytest.raises(TriggerFromCanceledRunError) as refused,
    ):
        run_context.parent_scope("a run of 'echo'")
    assert isinstance(refused.value, RunCanceledError)  # ends the attempt as the cancel
    message = str(refused.value)
    assert message.startswith("run run_x was canceled, so it cannot trigger a run of 'echo'")
    assert [r.getMessage() for r in caplog.records] == [message]


@pytest.mark.parametrize("reason", ["max_duration", "lease_lost"])
def test_a_signal_set_for_another_reason_refuses_nothing(scope, reason):
    scope.ctx.signal.set(reason)
    scope.ctx.signal.set("canceled")  # a later cancel does not change the first reason
    assert run_context.parent_scope("a batch") is scope
