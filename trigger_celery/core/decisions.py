"""What happens to a run after an attempt throws (SPEC 2 and 3), as a pure function.

The worker gathers the facts - the error, the attempt number, the run's ``max_attempts``,
the policy's default delay and what the ``catch_error`` hooks said - and
:func:`decide_after_failure` turns them into a :class:`Decision`:

* cancellation, ``max_duration`` and the never-retried errors end the run at once, as
  does an error that came out of a ``ReplayMismatchError`` (a replayed wait step that
  differed from its record): raised from it, or in an ``asyncio.TaskGroup``'s group
  with it (:func:`mismatch_in`); every retry would replay into it again;
* a ``catch_error`` hook that raised, or returned something other than None or a dict
  (or a dict with a key other than ``skip_retrying``, ``retry_at`` and
  ``retry_delay_in_ms``, or whose ``retry_at`` is not a datetime, or whose
  ``retry_delay_in_ms`` is not a finite number), ends the run CRASHED with code
  ``HANDLE_ERROR_ERROR``;
* on the last attempt the run FAILS, whatever the hooks asked (a hook that raised still
  counts as an internal error);
* ``{"skip_retrying": True}`` FAILS it; ``{"retry_at": dt}`` and
  ``{"retry_delay_in_ms": n}`` choose the retry time (never before now; a naive
  ``retry_at`` is UTC); None keeps the policy's default, and a policy with no retry
  left FAILS it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from trigger_celery.core.serialization import escape_text
from trigger_celery.core.statuses import RunStatus
from trigger_celery.errors import (
    AbortTaskRunError,
    HandleErrorError,
    MaxDurationExceededError,
    PayloadTooLargeError,
    ReplayMismatchError,
    RunCanceledError,
    SerializationError,
    TaskPayloadParsedError,
)

# What a ``catch_error`` verdict may say; any other key is a mistake (a typo would
# otherwise quietly keep the default policy).
VERDICT_KEYS = frozenset({"skip_retrying", "retry_at", "retry_delay_in_ms"})

# Errors that fail the run at once, whatever the retry policy says.
NEVER_RETRIED: tuple[type[BaseException], ...] = (
    AbortTaskRunError,
    TaskPayloadParsedError,
    SerializationError,
    PayloadTooLargeError,
    ReplayMismatchError,  # the code changed under a waiting run: retrying cannot help
)


@dataclass(frozen=True)
class Decision:
    """The run's next status after a failed attempt; QUEUED means "retry at ``retry_at``"."""

    status: RunStatus
    retry_at: datetime | None = None
    error: dict[str, Any] = field(default_factory=dict)

    @property
    def retries(self) -> bool:
        return self.status == RunStatus.QUEUED


# Characters of an error's message and of its stack that are stored. An error that
# quotes a whole response body or document would otherwise be written on the run, on
# every attempt and into a waiting parent's result, and shown whole on the run's page.
ERROR_MESSAGE_LIMIT = 32 * 1024
ERROR_STACK_LIMIT = 128 * 1024


def error_dict(err: BaseException, stack: str = "", code: str | None = None) -> dict[str, Any]:
    """How an error is stored on a run and an attempt: type, message, stack, code."""
    data: dict[str, Any] = {
        # A NUL character in a message (or its traceback) is stored as an escape: the
        # error is recorded whatever it says.
        "type": escape_text(type(err).__name__),
        "message": escape_text(shortened(message_of(err), ERROR_MESSAGE_LIMIT)),
        "stack": escape_text(shortened(stack, ERROR_STACK_LIMIT)),
    }
    if code:
        data["code"] = code
    return data


def shortened(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters; else its start and its end (a
    traceback's last lines name where the error was raised) around a note of how many
    characters were left out."""
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    left_out = len(text) - head - tail
    return f"{text[:head]}\n... [{left_out} characters left out] ...\n{text[-tail:]}"


def message_of(err: BaseException) -> str:
    """``str(err)``, or a stand-in naming the failure when the error's ``__str__`` itself
    raises (a careless override): the error is recorded and retried all the same."""
    try:
        return str(err)
    except Exception as broken:
        return f"<{type(err).__name__}.__str__ raised {type(broken).__name__}>"


def mismatch_in(err: BaseException) -> ReplayMismatchError | None:
    """The ``ReplayMismatchError`` that ``err`` is, was raised from (its ``__cause__``,
    ``raise ... from``) or holds (an exception group's members), if any. Its implicit
    ``__context__`` is not followed: Python sets it on any error raised while a handler
    runs, a fallback's own network blip included, which a retry may well get past."""
    seen: set[int] = set()
    todo: list[BaseException] = [err]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ReplayMismatchError):
            return current
        if current.__cause__ is not None:
            todo.append(current.__cause__)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
    return None


def aborted_in_group(err: BaseException) -> bool:
    """Whether ``err`` is an exception group holding an ``AbortTaskRunError`` (raised in
    an ``asyncio.TaskGroup``'s task, say): the code asked for no retry all the same."""
    return isinstance(err, BaseExceptionGroup) and err.subgroup(AbortTaskRunError) is not None


def consults_catch_error(err: BaseException) -> bool:
    """False for errors that end the run without asking ``catch_error`` or the policy."""
    ends = isinstance(err, (MaxDurationExceededError, RunCanceledError, *NEVER_RETRIED))
    return not ends and not aborted_in_group(err) and mismatch_in(err) is None


def _naming(stack: str, mismatch: ReplayMismatchError) -> str:
    """``stack``, ending with the replay mismatch that makes the failure final when the
    stack does not show it already (a stack cut to its size, say)."""
    said = message_of(mismatch)
    if said in stack:
        return stack  # raised from it, or in a group with it: its traceback is there
    return (
        f"{stack}\nNot retried: this error came from a replayed wait step's "
        f"{type(mismatch).__name__}: {said}"
    )


def decide_after_failure(
    err: BaseException,
    *,
    stack: str,
    attempt: int,
    max_attempts: int,
    now: datetime,
    default_delay_ms: int | None,
    verdict: Any = None,
    hook_error: BaseException | None = None,
    hook_stack: str = "",
) -> Decision:
    """Retry or not, and when.

    ``default_delay_ms`` is the policy's delay before the next attempt (None when the
    policy has no attempt left); ``verdict`` is the first non-None value a ``catch_error``
    hook returned, and ``hook_error`` what one raised.
    """
    error = error_dict(err, stack)
    if isinstance(err, TaskPayloadParsedError):
        error["code"] = "TASK_INPUT_ERROR"
    if isinstance(err, MaxDurationExceededError):
        return Decision(RunStatus.TIMED_OUT, error={**error, "code": "MAX_DURATION_EXCEEDED"})
    if isinstance(err, RunCanceledError):
        return Decision(RunStatus.CANCELED, error={**error, "code": "TASK_RUN_CANCELLED"})
    if isinstance(err, NEVER_RETRIED) or aborted_in_group(err):
        return Decision(RunStatus.FAILED, error=error)
    if (mismatch := mismatch_in(err)) is not None:
        return Decision(RunStatus.FAILED, error=error_dict(err, _naming(stack, mismatch)))
    if hook_error is not None:
        wrapped = HandleErrorError(f"catch_error hook raised: {hook_error!r}")
        return Decision(
            RunStatus.CRASHED, error=error_dict(wrapped, hook_stack, code="HANDLE_ERROR_ERROR")
        )
    if attempt >= max_attempts:
        return Decision(RunStatus.FAILED, error=error)
    default_retry_at = (
        now + timedelta(milliseconds=default_delay_ms) if default_delay_ms is not None else None
    )
    if verdict is None:
        if default_retry_at is None:
            return Decision(RunStatus.FAILED, error=error)
        return Decision(RunStatus.QUEUED, retry_at=default_retry_at, error=error)
    if not isinstance(verdict, dict):
        wrapped = HandleErrorError(f"catch_error returned {verdict!r}; expected None or a dict")
        return Decision(RunStatus.CRASHED, error=error_dict(wrapped, code="HANDLE_ERROR_ERROR"))
    unknown = sorted(str(key) for key in verdict if key not in VERDICT_KEYS)
    if unknown:
        wrapped = HandleErrorError(
            f"catch_error returned {verdict!r}: unknown key(s) {', '.join(unknown)}; "
            f"expected {', '.join(sorted(VERDICT_KEYS))}"
        )
        return Decision(RunStatus.CRASHED, error=error_dict(wrapped, code="HANDLE_ERROR_ERROR"))
    if verdict.get("skip_retrying"):
        return Decision(RunStatus.FAILED, error=error)
    try:
        retry_at = _requested_retry_at(verdict, now)
    except (TypeError, ValueError, OverflowError) as bad:
        wrapped = HandleErrorError(f"catch_error returned {verdict!r}: {bad}")
        return Decision(RunStatus.CRASHED, error=error_dict(wrapped, code="HANDLE_ERROR_ERROR"))
    if retry_at is not None:
        return Decision(RunStatus.QUEUED, retry_at=retry_at, error=error)
    if default_retry_at is None:
        return Decision(RunStatus.FAILED, error=error)
    return Decision(RunStatus.QUEUED, retry_at=default_retry_at, error=error)


def _requested_retry_at(verdict: dict[str, Any], now: datetime) -> datetime | None:
    """The retry time a dict verdict chooses, never before ``now``; None if it chooses none.

    Raises TypeError / ValueError / OverflowError when the value cannot be a retry time.
    """
    when = verdict.get("retry_at")
    if when is not None:
        if not isinstance(when, datetime):
            raise TypeError(f"retry_at must be a datetime, got {when!r}")
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # naive datetimes are UTC, as everywhere else
        return max(when, now)
    delay = verdict.get("retry_delay_in_ms")
    if delay is not None:
        ms = float(delay)
        if not math.isfinite(ms):
            raise ValueError(f"retry_delay_in_ms must be a finite number, got {delay!r}")
        return max(now + timedelta(milliseconds=ms), now)
    return None
