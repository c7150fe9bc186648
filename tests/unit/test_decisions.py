"""What happens to a run after an attempt throws (SPEC 2): ``core.decisions``, pure and fast."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from trigger_celery.core.decisions import (
    NEVER_RETRIED,
    Decision,
    consults_catch_error,
    decide_after_failure,
    error_dict,
)
from trigger_celery.core.retry import RetryPolicy, next_delay_ms
from trigger_celery.core.statuses import RunStatus
from trigger_celery.errors import (
    AbortTaskRunError,
    MaxDurationExceededError,
    PayloadTooLargeError,
    ReplayMismatchError,
    RunCanceledError,
    SerializationError,
    TaskPayloadParsedError,
)

NOW = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)
STACK = 'Traceback (most recent call last):\n  File "tasks.py", line 3\nValueError: boom'
HOOK_STACK = 'Traceback (most recent call last):\n  File "hooks.py", line 9\nKeyError: oops'


def decide(err=None, **overrides):
    """``decide_after_failure`` on attempt 1 of 3 with a 1 s policy delay, unless overridden."""
    facts = {
        "stack": STACK,
        "attempt": 1,
        "max_attempts": 3,
        "now": NOW,
        "default_delay_ms": 1000,
    }
    facts.update(overrides)
    return decide_after_failure(ValueError("boom") if err is None else err, **facts)


# Verdicts that would retry the run if they were consulted.
RETRY_VERDICTS = [
    None,
    {"retry_at": NOW + timedelta(minutes=5)},
    {"retry_delay_in_ms": 2500},
    {},
]

NEVER_RETRIED_ERRORS = [
    AbortTaskRunError("give up"),
    TaskPayloadParsedError("payload.age: not an int", cause=ValueError("x")),
    SerializationError("cannot encode a set"),
    PayloadTooLargeError("payload is 4 MB"),
    ReplayMismatchError("step 2 was wait.for, now wait.until"),
]


def test_the_never_retried_cases_cover_every_never_retried_error():
    assert {type(e) for e in NEVER_RETRIED_ERRORS} == set(NEVER_RETRIED)


@pytest.mark.parametrize("verdict", RETRY_VERDICTS)
def test_an_abort_raised_in_a_task_group_fails_the_run_at_once(verdict):
    """An asyncio.TaskGroup gives its tasks' errors as an ExceptionGroup: an
    AbortTaskRunError in it asked for no retry all the same (it was retried)."""
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [AbortTaskRunError("stop")])])
    for group in (ExceptionGroup("tasks", [KeyError("x"), AbortTaskRunError("stop")]), nested):
        d = decide(group, attempt=1, max_attempts=10, verdict=verdict)
        assert (d.status, d.retries) == (RunStatus.FAILED, False)
        assert consults_catch_error(group) is False
    others = ExceptionGroup("tasks", [KeyError("x"), ValueError("y")])
    assert decide(others).retries and consults_catch_error(others)


# --- cancellation and max_duration -----------------------------------------------------


@pytest.mark.parametrize("verdict", RETRY_VERDICTS)
@pytest.mark.parametrize("hook_error", [None, KeyError("oops")])
def test_a_canceled_run_is_never_retried(verdict, hook_error):
    d = decide(
        RunCanceledError("canceled by user"),
        attempt=1,
        max_attempts=10,
        verdict=verdict,
        hook_error=hook_error,
    )
    assert d.status == RunStatus.CANCELED
    assert d.retry_at is None
    assert not d.retries
    assert d.error == {
        "type": "RunCanceledError",
        "message": "canceled by user",
        "stack": STACK,
        "code": "TASK_RUN_CANCELLED",
    }


@pytest.mark.parametrize("verdict", RETRY_VERDICTS)
@pytest.mark.parametrize("hook_error", [None, KeyError("oops")])
def test_a_run_over_its_max_duration_times_out_even_with_attempts_left(verdict, hook_error):
    d = decide(
        MaxDurationExceededError("ran 31 s, max_duration is 30 s"),
        attempt=1,
        max_attempts=10,
        verdict=verdict,
        hook_error=hook_error,
    )
    assert d.status == RunStatus.TIMED_OUT
    assert d.retry_at is None
    assert not d.retries
    assert d.error == {
        "type": "MaxDurationExceededError",
        "message": "ran 31 s, max_duration is 30 s",
        "stack": STACK,
        "code": "MAX_DURATION_EXCEEDED",
    }


# --- never-retried errors --------------------------------------------------------------


@pytest.mark.parametrize("err", NEVER_RETRIED_ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("verdict", RETRY_VERDICTS)
def test_a_never_retried_error_fails_the_run_on_attempt_one_of_ten(err, verdict):
    d = decide(err, attempt=1, max_attempts=10, default_delay_ms=1000, verdict=verdict)
    assert d.status == RunStatus.FAILED
    assert d.retry_at is None
    assert not d.retries
    assert d.error["type"] == type(err).__name__
    assert d.error["message"] == str(err)
    assert d.error["stack"] == STACK


@pytest.mark.parametrize("err", NEVER_RETRIED_ERRORS, ids=lambda e: type(e).__name__)
def test_a_never_retried_error_wins_over_a_catch_error_hook_that_raised(err):
    d = decide(err, attempt=1, max_attempts=10, hook_error=KeyError("oops"))
    assert d.status == RunStatus.FAILED
    assert d.error["type"] == type(err).__name__


def test_a_payload_schema_failure_is_stored_with_code_task_input_error():
    d = decide(TaskPayloadParsedError("payload.age: not an int"), attempt=1, max_attempts=10)
    assert d.error == {
        "type": "TaskPayloadParsedError",
        "message": "payload.age: not an int",
        "stack": STACK,
        "code": "TASK_INPUT_ERROR",
    }


@pytest.mark.parametrize(
    "err",
    [e for e in NEVER_RETRIED_ERRORS if not isinstance(e, TaskPayloadParsedError)],
    ids=lambda e: type(e).__name__,
)
def test_other_never_retried_errors_are_stored_without_a_code(err):
    assert "code" not in decide(err).error


# --- an error that came out of a replayed wait step that differed from its record ------

MISMATCH = ReplayMismatchError("wait step 0 of run run_x waited on a batch of 3 items")
STACK_FROM_MISMATCH = (
    "Traceback (most recent call last):\n  ...\n"
    f"trigger_celery.errors.ReplayMismatchError: {MISMATCH}\n\n"
    "The above exception was the direct cause of the following exception:\n\n"
    "Traceback (most recent call last):\n  ...\nRuntimeError: could not settle"
)


def _raised(outer: BaseException, how: str = "from") -> BaseException:
    """What the code raised while handling the mismatch: ``raise outer from err``
    (``from``), a bare ``raise outer`` in the ``except`` (``context``), or ``from None``."""
    try:
        try:
            raise ReplayMismatchError(str(MISMATCH))
        except ReplayMismatchError as err:
            if how == "from":
                raise outer from err
            if how == "none":
                raise outer from None
            raise outer
    except BaseException as raised:  # an ExceptionGroup too
        return raised


WRAPPED = {
    "raised-from": lambda: _raised(RuntimeError("could not settle")),
    "in-a-group": lambda: ExceptionGroup("in a group", [ReplayMismatchError(str(MISMATCH))]),
    "group-of-a-cause": lambda: ExceptionGroup(
        "in a group", [KeyError("x"), _raised(ValueError("from it"))]
    ),
}


@pytest.mark.parametrize("verdict", RETRY_VERDICTS)
@pytest.mark.parametrize("hook_error", [None, KeyError("oops")])
@pytest.mark.parametrize("wrapped", list(WRAPPED), ids=list(WRAPPED))
def test_an_error_that_came_out_of_a_replay_mismatch_fails_the_run_at_once(
    wrapped, hook_error, verdict
):
    """The code raised another error from the mismatch, or a TaskGroup gathered it in
    its group: every retry would replay into the same mismatch."""
    err = WRAPPED[wrapped]()
    d = decide(
        err,
        stack=STACK_FROM_MISMATCH,
        attempt=1,
        max_attempts=10,
        verdict=verdict,
        hook_error=hook_error,
    )
    assert d.status == RunStatus.FAILED
    assert not d.retries
    assert d.error == {
        "type": type(err).__name__,
        "message": str(err),
        "stack": STACK_FROM_MISMATCH,  # the mismatch is in it already
    }
    assert consults_catch_error(err) is False


def test_a_stack_that_does_not_show_the_mismatch_is_given_it():
    err = _raised(KeyError("later"))
    d = decide(err, stack=STACK, max_attempts=10)
    assert d.status == RunStatus.FAILED
    assert d.error["stack"] == (
        f"{STACK}\nNot retried: this error came from a replayed wait step's "
        f"ReplayMismatchError: {MISMATCH}"
    )


@pytest.mark.parametrize("how", ["context", "none"], ids=["in-its-handler", "from-none"])
def test_an_error_of_the_codes_own_while_it_handles_a_mismatch_is_retried(how):
    """A fallback in the handler (``except ReplayMismatchError: fetch_elsewhere()``)
    that meets a network blip: Python links the blip to the mismatch as its context,
    but it is the fallback's own error, and a retry (which runs the handler again) may
    get past it. Only ``raise ... from`` and a group say the error is the mismatch's."""
    blip = _raised(ConnectionError("503 from the payment API"), how)
    assert blip.__context__ is not None  # Python linked it all the same
    d = decide(blip, attempt=1, max_attempts=3)
    assert d.retries
    assert consults_catch_error(blip) is True


def test_a_cancel_or_max_duration_wins_over_a_replay_mismatch():
    canceled = _raised(RunCanceledError("c"))
    timed_out = _raised(MaxDurationExceededError("m"))
    assert (decide(canceled).status, decide(timed_out).status) == (
        RunStatus.CANCELED,
        RunStatus.TIMED_OUT,
    )


# --- a catch_error hook that raised ----------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3], ids=["first", "middle", "last"])
@pytest.mark.parametrize("verdict", [None, {"retry_delay_in_ms": 2500}])
def test_a_catch_error_hook_that_raised_crashes_the_run(attempt, verdict):
    d = decide(
        attempt=attempt,
        max_attempts=3,
        default_delay_ms=1000,
        verdict=verdict,
        hook_error=KeyError("oops"),
        hook_stack=HOOK_STACK,
    )
    assert d.status == RunStatus.CRASHED
    assert d.retry_at is None
    assert not d.retries
    assert d.error["code"] == "HANDLE_ERROR_ERROR"
    assert d.error["type"] == "HandleErrorError"
    assert "KeyError('oops')" in d.error["message"]
    assert d.error["stack"] == HOOK_STACK


# --- the last attempt ------------------------------------------------------------------


@pytest.mark.parametrize(
    "verdict",
    [
        None,
        {"retry_at": NOW + timedelta(minutes=5)},
        {"retry_delay_in_ms": 2500},
        {},
        "yes",  # even a malformed verdict: there is no retry to choose the time of
    ],
)
@pytest.mark.parametrize(("attempt", "max_attempts"), [(3, 3), (1, 1), (4, 3)])
def test_the_last_attempt_fails_the_run_whatever_the_verdict_says(verdict, attempt, max_attempts):
    # default_delay_ms is given so that only ``attempt >= max_attempts`` can stop the retry
    d = decide(attempt=attempt, max_attempts=max_attempts, default_delay_ms=1000, verdict=verdict)
    assert d.status == RunStatus.FAILED
    assert d.retry_at is None
    assert d.error == {"type": "ValueError", "message": "boom", "stack": STACK}


# --- verdict None: the policy decides --------------------------------------------------


@pytest.mark.parametrize("delay_ms", [0, 1000, 4000, 60_000])
def test_without_a_verdict_the_run_retries_after_the_policy_delay(delay_ms):
    d = decide(attempt=2, max_attempts=3, default_delay_ms=delay_ms, verdict=None)
    assert d.status == RunStatus.QUEUED
    assert d.retries
    assert d.retry_at == NOW + timedelta(milliseconds=delay_ms)
    assert d.error == {"type": "ValueError", "message": "boom", "stack": STACK}


def test_without_a_verdict_or_a_policy_delay_the_run_fails():
    d = decide(attempt=1, max_attempts=3, default_delay_ms=None, verdict=None)
    assert d.status == RunStatus.FAILED
    assert d.retry_at is None


# --- malformed verdicts ----------------------------------------------------------------


@pytest.mark.parametrize("verdict", ["yes", 5, 0, True, False, ["retry"], ("retry_at", NOW)])
def test_a_verdict_that_is_not_a_dict_crashes_the_run(verdict):
    d = decide(attempt=1, max_attempts=3, default_delay_ms=1000, verdict=verdict)
    assert d.status == RunStatus.CRASHED
    assert d.retry_at is None
    assert d.error["code"] == "HANDLE_ERROR_ERROR"
    assert d.error["type"] == "HandleErrorError"
    assert repr(verdict) in d.error["message"]


@pytest.mark.parametrize(
    "verdict",
    [
        {"skip_retry": True},
        {"skipRetrying": True},
        {"retry_delay_in_ms": 10, "delay": 5},
        {"note": "x"},
    ],
)
def test_a_verdict_with_an_unknown_key_crashes_the_run_naming_the_key(verdict):
    d = decide(attempt=1, max_attempts=3, default_delay_ms=1000, verdict=verdict)
    assert d.status == RunStatus.CRASHED
    assert d.retry_at is None
    assert d.error["code"] == "HANDLE_ERROR_ERROR"
    unknown = next(key for key in verdict if key not in ("retry_delay_in_ms",))
    assert f"unknown key(s) {unknown}" in d.error["message"]
    assert "retry_delay_in_ms, skip_retrying" in d.error["message"]


# --- dict verdicts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "verdict",
    [
        {"skip_retrying": True},
        {"skip_retrying": True, "retry_at": NOW + timedelta(minutes=5)},
        {"skip_retrying": True, "retry_delay_in_ms": 2500},
    ],
)
def test_skip_retrying_fails_the_run_though_attempts_and_a_policy_delay_remain(verdict):
    d = decide(attempt=1, max_attempts=10, default_delay_ms=1000, verdict=verdict)
    assert d.status == RunStatus.FAILED
    assert d.retry_at is None
    assert d.error == {"type": "ValueError", "message": "boom", "stack": STACK}


@pytest.mark.parametrize(
    "retry_at",
    [
        NOW + timedelta(minutes=5),
        NOW + timedelta(days=2, milliseconds=1),
        datetime(2026, 1, 15, 18, 0, tzinfo=timezone(timedelta(hours=5))),  # 13:00 UTC
    ],
)
def test_retry_at_queues_the_run_at_that_instant(retry_at):
    d = decide(default_delay_ms=1000, verdict={"retry_at": retry_at})
    assert d.status == RunStatus.QUEUED
    assert d.retries
    assert d.retry_at == retry_at
    assert d.error == {"type": "ValueError", "message": "boom", "stack": STACK}


@pytest.mark.parametrize(
    "retry_at",
    [
        NOW - timedelta(milliseconds=1),
        NOW - timedelta(days=365),
        datetime(2026, 1, 15, 12, 0, tzinfo=timezone(timedelta(hours=5))),  # 07:00 UTC
    ],
)
def test_a_retry_at_in_the_past_is_clamped_to_now(retry_at):
    d = decide(default_delay_ms=1000, verdict={"retry_at": retry_at})
    assert d.status == RunStatus.QUEUED
    assert d.retry_at == NOW


def test_a_retry_at_of_exactly_now_is_kept():
    assert decide(verdict={"retry_at": NOW}).retry_at == NOW


@pytest.mark.parametrize(
    ("delay_ms", "expected"),
    [
        (2500, timedelta(seconds=2.5)),
        (0, timedelta(0)),
        (1.5, timedelta(microseconds=1500)),
        (3_600_000, timedelta(hours=1)),
    ],
)
def test_retry_delay_in_ms_queues_the_run_after_that_delay(delay_ms, expected):
    d = decide(default_delay_ms=1000, verdict={"retry_delay_in_ms": delay_ms})
    assert d.status == RunStatus.QUEUED
    assert d.retries
    assert d.retry_at == NOW + expected


def test_retry_at_wins_over_retry_delay_in_ms():
    d = decide(verdict={"retry_at": NOW + timedelta(minutes=5), "retry_delay_in_ms": 2500})
    assert d.retry_at == NOW + timedelta(minutes=5)


def test_a_naive_retry_at_is_read_as_utc():
    d = decide(verdict={"retry_at": datetime(2026, 1, 15, 13, 0)})
    assert d.status == RunStatus.QUEUED
    assert d.retry_at == NOW + timedelta(hours=1)
    assert d.retry_at.tzinfo is not None


def test_a_naive_retry_at_in_the_past_is_clamped_to_now():
    assert decide(verdict={"retry_at": datetime(2026, 1, 15, 11, 0)}).retry_at == NOW


def test_a_negative_retry_delay_is_clamped_to_now():
    d = decide(verdict={"retry_delay_in_ms": -5000})
    assert d.status == RunStatus.QUEUED
    assert d.retry_at == NOW


@pytest.mark.parametrize("delay", ["2500", 2500.0])
def test_a_retry_delay_given_as_a_numeric_string_is_still_accepted(delay):
    assert decide(verdict={"retry_delay_in_ms": delay}).retry_at == NOW + timedelta(seconds=2.5)


@pytest.mark.parametrize(
    "verdict",
    [
        {"retry_at": "2026-01-16T00:00:00Z"},
        {"retry_at": 1_768_500_000},
        {"retry_at": datetime(2026, 1, 16, tzinfo=UTC).date()},
        {"retry_delay_in_ms": "soon"},
        {"retry_delay_in_ms": [2500]},
        {"retry_delay_in_ms": float("nan")},
        {"retry_delay_in_ms": float("inf")},
        {"retry_delay_in_ms": 1e30},  # past what a datetime can hold
    ],
    ids=repr,
)
def test_a_verdict_with_an_unusable_retry_time_crashes_the_run(verdict):
    # these used to raise out of decide_after_failure and leave the run EXECUTING
    d = decide(attempt=1, max_attempts=3, default_delay_ms=1000, verdict=verdict)
    assert d.status == RunStatus.CRASHED
    assert d.retry_at is None
    assert d.error["code"] == "HANDLE_ERROR_ERROR"
    assert d.error["type"] == "HandleErrorError"
    assert repr(verdict) in d.error["message"]


NO_CHOICE_VERDICTS = [
    {},
    {"skip_retrying": False},
    {"retry_at": None},
    {"retry_delay_in_ms": None},
    {"retry_at": None, "retry_delay_in_ms": None, "skip_retrying": None},
]


@pytest.mark.parametrize("verdict", NO_CHOICE_VERDICTS)
def test_a_dict_that_chooses_nothing_keeps_the_policy_delay(verdict):
    d = decide(attempt=1, max_attempts=3, default_delay_ms=4000, verdict=verdict)
    assert d.status == RunStatus.QUEUED
    assert d.retry_at == NOW + timedelta(seconds=4)


@pytest.mark.parametrize("verdict", NO_CHOICE_VERDICTS)
def test_a_dict_that_chooses_nothing_fails_the_run_when_the_policy_has_no_delay(verdict):
    d = decide(attempt=1, max_attempts=3, default_delay_ms=None, verdict=verdict)
    assert d.status == RunStatus.FAILED
    assert d.retry_at is None


@pytest.mark.parametrize(
    "verdict", [{"retry_at": NOW + timedelta(minutes=5)}, {"retry_delay_in_ms": 2500}]
)
def test_a_verdict_can_retry_when_the_policy_itself_would_not(verdict):
    # attempts remain but the policy offers no delay: the hook's explicit choice still counts
    d = decide(attempt=1, max_attempts=3, default_delay_ms=None, verdict=verdict)
    assert d.status == RunStatus.QUEUED
    assert d.retry_at > NOW


# --- the stored error ------------------------------------------------------------------


def test_error_dict_stores_type_message_and_stack():
    assert error_dict(KeyError("k"), "the stack") == {
        "type": "KeyError",
        "message": "'k'",
        "stack": "the stack",
    }


def test_error_dict_adds_the_code_only_when_one_is_given():
    assert error_dict(ValueError("v"), code="SOME_CODE")["code"] == "SOME_CODE"
    assert "code" not in error_dict(ValueError("v"))
    assert "code" not in error_dict(ValueError("v"), code="")
    assert error_dict(ValueError("v"))["stack"] == ""


def test_the_decision_keeps_the_error_of_the_attempt():
    d = decide(RuntimeError("disk full"), stack="line 1\nline 2")
    assert d.error == {"type": "RuntimeError", "message": "disk full", "stack": "line 1\nline 2"}


# --- Decision.retries ------------------------------------------------------------------


@pytest.mark.parametrize("status", list(RunStatus))
def test_a_decision_retries_only_when_it_queues_the_run(status):
    assert Decision(status, retry_at=NOW).retries is (status == RunStatus.QUEUED)


# --- consults_catch_error --------------------------------------------------------------


@pytest.mark.parametrize(
    "err",
    [RunCanceledError("c"), MaxDurationExceededError("m"), *NEVER_RETRIED_ERRORS],
    ids=lambda e: type(e).__name__,
)
def test_catch_error_is_not_consulted_for_errors_that_end_the_run(err):
    assert consults_catch_error(err) is False


@pytest.mark.parametrize(
    "err", [ValueError("v"), RuntimeError("r"), KeyError("k"), Exception("e")], ids=repr
)
def test_catch_error_is_consulted_for_ordinary_errors(err):
    assert consults_catch_error(err) is True


# --- the decision fed by the real policy math ------------------------------------------

POLICY = RetryPolicy(
    max_attempts=3, factor=2, min_timeout_in_ms=1000, max_timeout_in_ms=60000, randomize=False
)


def test_the_policy_waits_one_then_two_seconds_then_stops():
    assert [next_delay_ms(POLICY, n) for n in (1, 2, 3)] == [1000, 2000, None]


def test_a_run_failing_every_attempt_is_retried_twice_then_fails():
    clock = NOW
    decisions = []
    for attempt in (1, 2, 3):
        d = decide(
            attempt=attempt,
            max_attempts=POLICY.max_attempts,
            now=clock,
            default_delay_ms=next_delay_ms(POLICY, attempt),
        )
        decisions.append(d)
        if d.retries:
            clock = d.retry_at  # the next attempt fails the instant it starts
    assert [d.status for d in decisions] == [RunStatus.QUEUED, RunStatus.QUEUED, RunStatus.FAILED]
    assert decisions[0].retry_at == NOW + timedelta(seconds=1)
    assert decisions[1].retry_at == NOW + timedelta(seconds=3)
    assert decisions[2].retry_at is None


def test_the_policy_delay_reaches_the_decision_after_jitter_and_cap():
    policy = RetryPolicy(max_attempts=10, min_timeout_in_ms=1000, max_timeout_in_ms=5000)
    delays = [next_delay_ms(policy, n, rand=lambda: 0.5) for n in (1, 2, 3)]
    assert delays == [1500, 3000, 5000]  # 6000 capped at 5000
    retry_ats = [
        decide(attempt=n, max_attempts=10, default_delay_ms=ms).retry_at
        for n, ms in zip((1, 2, 3), delays, strict=True)
    ]
    assert retry_ats == [
        NOW + timedelta(milliseconds=1500),
        NOW + timedelta(milliseconds=3000),
        NOW + timedelta(milliseconds=5000),
    ]


def test_a_policy_with_one_attempt_never_retries():
    policy = RetryPolicy(max_attempts=1, randomize=False)
    assert next_delay_ms(policy, 1) is None
    d = decide(attempt=1, max_attempts=1, default_delay_ms=next_delay_ms(policy, 1))
    assert d.status == RunStatus.FAILED


def test_an_error_with_a_nul_character_is_recorded_with_it_escaped():
    stack = 'Traceback...\n    raise ValueError("a\x00b")\nValueError: a\x00b\n'
    error = error_dict(ValueError("a\x00b\ud800"), stack)
    assert error["message"] == "a\\x00b\\ud800"
    assert "\x00" not in error["stack"] and 'ValueError("a\\x00b")' in error["stack"]


def test_an_error_whose_str_raises_is_still_recorded_with_its_type_and_stack():
    class Unprintable(Exception):
        def __str__(self):
            raise AttributeError("no status")

    recorded = error_dict(Unprintable(), "Traceback ...")
    assert recorded["type"] == "Unprintable"
    assert recorded["message"] == "<Unprintable.__str__ raised AttributeError>"
    assert recorded["stack"] == "Traceback ..."


def test_a_huge_error_message_and_stack_are_stored_shortened_with_their_ends():
    from trigger_celery.core.decisions import ERROR_MESSAGE_LIMIT, ERROR_STACK_LIMIT

    message = "start " + "x" * (3 * ERROR_MESSAGE_LIMIT) + " end"
    stack = "Traceback\n" + "  line\n" * ERROR_STACK_LIMIT + 'ValueError: raised "here"'
    recorded = error_dict(ValueError(message), stack)
    assert recorded["message"].startswith("start ")
    assert recorded["message"].endswith(" end")
    assert f"[{len(message) - ERROR_MESSAGE_LIMIT} characters left out]" in recorded["message"]
    assert len(recorded["message"]) < ERROR_MESSAGE_LIMIT + 100
    assert recorded["stack"].startswith("Traceback\n")
    assert recorded["stack"].endswith('ValueError: raised "here"')
    assert len(recorded["stack"]) < ERROR_STACK_LIMIT + 100


def test_an_error_message_at_the_limit_is_stored_whole():
    from trigger_celery.core.decisions import ERROR_MESSAGE_LIMIT

    message = "y" * ERROR_MESSAGE_LIMIT
    assert error_dict(ValueError(message))["message"] == message
