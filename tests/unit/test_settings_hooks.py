"""Global hooks named in settings: a worker does not start without one it cannot import."""

from __future__ import annotations

import pytest
from django.test import override_settings

from trigger_celery.core.hooks import global_hooks
from trigger_celery.worker import signals


@pytest.fixture
def fresh_registration(monkeypatch):
    monkeypatch.setattr(signals, "_settings_hooks_registered", False)
    yield
    global_hooks.clear()


def test_a_hook_that_cannot_be_imported_stops_the_start_naming_it(fresh_registration):
    hooks = {"on_success": ["tests.taskapp.tasks._skip"], "on_failure": ["nope.mod.fn"]}
    with (
        override_settings(TRIGGER_CELERY={"HOOKS": hooks}),
        pytest.raises(SystemExit, match=r"HOOKS\['on_failure'\] names 'nope.mod.fn'"),
    ):
        signals.register_hooks_from_settings()
    assert global_hooks.get("on_success") == []  # none of them, not the valid half


def test_valid_hooks_and_middleware_are_registered(fresh_registration):
    config = {
        "HOOKS": {"on_success": "tests.taskapp.tasks._success_of_attempt"},
        "MIDDLEWARE": ["tests.taskapp.tasks._awaiting_middleware"],
    }
    with override_settings(TRIGGER_CELERY=config):
        assert signals.register_hooks_from_settings() == 2
    assert len(global_hooks.get("on_success")) == 1
    assert [name for name, _ in global_hooks.middleware] == [
        "tests.taskapp.tasks._awaiting_middleware"
    ]


def test_settings_read_again_when_the_dict_is_replaced_or_changed_in_place():
    """get_settings() keeps what it built last: a replaced TRIGGER_CELERY dict
    (override_settings) and one changed in place are both read again."""
    from trigger_celery.conf import get_settings

    with override_settings(TRIGGER_CELERY={"ENVIRONMENT": "STAGING", "LEASE_SECONDS": 7}):
        assert get_settings().LEASE_SECONDS == 7
        assert get_settings() is get_settings()
        from django.conf import settings

        settings.TRIGGER_CELERY["LEASE_SECONDS"] = 9
        assert get_settings().LEASE_SECONDS == 9
    with override_settings(TRIGGER_CELERY={"ENVIRONMENT": "STAGING", "LEASE_SECONDS": 8}):
        assert get_settings().LEASE_SECONDS == 8


def test_a_settings_hook_taking_an_argument_it_is_never_given_stops_the_start(
    fresh_registration,
):
    # _skip(error) is a catch_error hook; on_success is never given "error".
    hooks = {"on_success": "tests.taskapp.tasks._skip", "catch_error": "tests.taskapp.tasks._skip"}
    with (
        override_settings(TRIGGER_CELERY={"HOOKS": hooks}),
        pytest.raises(SystemExit) as info,
    ):
        signals.register_hooks_from_settings()
    message = str(info.value)
    assert "HOOKS['on_success'] names 'tests.taskapp.tasks._skip'" in message
    assert "takes 'error', which on_success is never given" in message
    assert "HOOKS['catch_error']" not in message  # there it is given "error"
    assert global_hooks.get("on_success") == []


def test_settings_middleware_that_takes_no_next_is_a_check_error_and_stops_the_start(
    fresh_registration,
):
    from trigger_celery.checks import _check_hook_paths

    errors = _check_hook_paths({}, ["os.getcwd"])
    assert [e.id for e in errors] == ["trigger_celery.E011"]
    assert "MIDDLEWARE names 'os.getcwd'" in errors[0].msg
    assert "takes no 'next' parameter" in errors[0].msg
    with (
        override_settings(TRIGGER_CELERY={"MIDDLEWARE": ["os.getcwd"]}),
        pytest.raises(SystemExit, match="takes no 'next' parameter"),
    ):
        signals.register_hooks_from_settings()
    assert global_hooks.middleware == []
