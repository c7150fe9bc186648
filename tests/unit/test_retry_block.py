import asyncio

import pytest

from tests.unit.contexts import a_context
from trigger_celery import retry
from trigger_celery.core import context as run_context
from trigger_celery.errors import (
    AbortTaskRunError,
    LeaseLostError,
    MaxDurationExceededError,
    PayloadTooLargeError,
    ReplayMismatchError,
    RunCanceledError,
    SerializationError,
    TaskPayloadParsedError,
)

FAST = {"max_attempts": 3, "min_timeout_in_ms": 1, "max_timeout_in_ms": 2, "randomize": False}


def flaky(fail_times):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= fail_times:
            raise ConnectionError(f"call {len(calls)} failed")
        return len(calls)

    return fn, calls


def test_on_throw_retries_until_success():
    fn, calls = flaky(2)
    assert retry.on_throw(fn, **FAST) == 3
    assert len(calls) == 3


def test_on_throw_reraises_after_max_attempts():
    fn, calls = flaky(5)
    with pytest.raises(ConnectionError, match="call 3 failed"):
        retry.on_throw(fn, **FAST)
    assert len(calls) == 3


def test_decorator_form_sync_and_async():
    fn, calls = flaky(1)

    @retry.on_throw(**FAST)
    def wrapped():
        return fn()

    assert wrapped() == 2
    assert len(calls) == 2

    attempts = []

    @retry.on_throw(**FAST)
    async def coro():
        attempts.append(1)
        if len(attempts) < 2:
            raise TimeoutError("slow")
        return "ok"

    assert asyncio.run(coro()) == "ok"


def test_bad_policy_is_refused():
    with pytest.raises(ValueError, match="'tries'"):
        retry.on_throw(lambda: 1, tries=3)


def test_block_form_retries_the_block_until_it_passes():
    fn, _ = flaky(2)
    seen = []
    for attempt in retry.on_throw(**FAST):
        with attempt:
            seen.append(attempt.number)
            value = fn()
    assert value == 3 and seen == [1, 2, 3]


def test_block_form_raises_the_last_error_when_no_try_is_left():
    fn, calls = flaky(5)
    with pytest.raises(ConnectionError, match="call 3 failed"):
        for attempt in retry.on_throw(**FAST):
            with attempt:
                fn()
    assert len(calls) == 3


def test_block_form_async():
    fn, _ = flaky(1)

    async def main():
        async for attempt in retry.on_throw(**FAST):
            with attempt:
                return fn()

    assert asyncio.run(main()) == 2


def test_a_plain_with_is_refused_with_the_form_that_works():
    refused = pytest.raises(TypeError, match=r"for attempt in retry\.on_throw")
    with refused, retry.on_throw(**FAST):
        pass


@pytest.mark.parametrize(
    "stop", [AbortTaskRunError, RunCanceledError, MaxDurationExceededError, ReplayMismatchError]
)
def test_on_throw_never_tries_again_after_an_error_that_ends_the_run(stop):
    calls = []

    def fn():
        calls.append(1)
        raise stop("stop")

    with pytest.raises(stop):
        retry.on_throw(fn, **FAST)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "stop", [AbortTaskRunError, RunCanceledError, LeaseLostError, ReplayMismatchError]
)
def test_a_retried_block_never_tries_again_after_an_error_that_ends_the_run(stop):
    tries = []
    with pytest.raises(stop):
        for attempt in retry.on_throw(**FAST):
            with attempt:
                tries.append(attempt.number)
                raise stop("stop")
    assert tries == [1]


@pytest.mark.parametrize(
    "same_again", [TaskPayloadParsedError, SerializationError, PayloadTooLargeError]
)
def test_an_error_another_try_would_meet_again_is_not_tried_again(same_again):
    """The errors a run is never retried for (a child's payload that is not JSON or over
    the limit; a payload its schema refuses): nor is a block."""
    calls = []

    def fn():
        calls.append(1)
        raise same_again("the same on every try")

    with pytest.raises(same_again):
        retry.on_throw(fn, **FAST)
    tries = []
    with pytest.raises(same_again):
        for attempt in retry.on_throw(**FAST):
            with attempt:
                tries.append(attempt.number)
                raise same_again("the same on every try")
    assert (len(calls), tries) == (1, [1])


def test_on_throw_does_not_try_again_an_abort_raised_in_a_task_group():
    calls = []

    def fn():
        calls.append(1)
        raise ExceptionGroup("tasks", [AbortTaskRunError("stop"), KeyError("x")])

    with pytest.raises(ExceptionGroup):
        retry.on_throw(fn, **FAST)
    assert len(calls) == 1


def _inside_a_run_whose_signal_is(set_to):
    ctx = a_context()
    if set_to:
        ctx.signal.set("canceled")
    return run_context.enter(run_context.RunScope(ctx))


@pytest.mark.parametrize("signal_set, calls_made", [(True, 1), (False, 3)])
def test_on_throw_stops_trying_once_the_runs_abort_signal_is_set(signal_set, calls_made):

    fn, calls = flaky(5)
    token = _inside_a_run_whose_signal_is(signal_set)
    try:
        with pytest.raises(ConnectionError):
            retry.on_throw(fn, **FAST)
        tries = []
        with pytest.raises(ConnectionError):
            for attempt in retry.on_throw(**FAST):
                with attempt:
                    tries.append(attempt.number)
                    raise ConnectionError("down")
    finally:
        run_context.leave(token)
    assert len(calls) == calls_made
    assert len(tries) == calls_made


@pytest.mark.parametrize("how, calls_made", [("from", 1), ("in-its-handler", 3), ("after", 3)])
def test_on_throw_stops_trying_an_error_that_came_out_of_a_replay_mismatch(how, calls_made):
    """The block's error was raised from a replayed wait step that differed from its
    record: another try would take the next step, and the attempt fails for good all
    the same. An error of the code's own, also one raised while it handles the
    mismatch (a fallback's network blip), is tried again as ever."""
    calls = []

    def fn():
        calls.append(1)
        try:
            raise ReplayMismatchError("step 0")
        except ReplayMismatchError as err:
            if how == "from":
                raise ConnectionError("down") from err
            if how == "in-its-handler":
                raise ConnectionError("down")  # the code's own fallback
        raise ConnectionError("down")

    token = _inside_a_run_whose_signal_is(False)
    try:
        with pytest.raises(ConnectionError):
            retry.on_throw(fn, **FAST)
    finally:
        run_context.leave(token)
    assert len(calls) == calls_made
