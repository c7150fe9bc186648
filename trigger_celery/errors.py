"""Every public error of trigger_celery, under one base class."""

from __future__ import annotations

from typing import Any


class TriggerCeleryError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(TriggerCeleryError, ValueError):
    """A setting, task definition or queue declaration is wrong."""


class DuplicateTaskIdError(ConfigurationError):
    """Two tasks were defined with the same id."""


class TaskModuleImportError(ConfigurationError):
    """An installed app's ``tasks`` module raised when it was imported."""


class InvalidTriggerOptionError(TriggerCeleryError, ValueError):
    """A trigger option has a value it does not take; the message names option and value.

    ``problems`` holds one ``(option, message)`` per wrong option (option None when the
    problem is not one option's)."""

    def __init__(self, problems: list[tuple[str | None, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


class RunNotFoundError(TriggerCeleryError, LookupError):
    """No run has the given id."""


class InvalidRunStateError(TriggerCeleryError):
    """The run is not in a status that allows the requested change."""


class PayloadTooLargeError(TriggerCeleryError, ValueError):
    """A payload is over the size limit."""


class SerializationError(TriggerCeleryError, TypeError):
    """A payload or output cannot be encoded as JSON."""


class AbortTaskRunError(TriggerCeleryError):
    """Raise from a run to fail it at once, with no retry."""


class TaskPayloadParsedError(TriggerCeleryError):
    """The payload did not pass the schema task's schema; never retried."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class OutsideRunError(TriggerCeleryError, RuntimeError):
    """A run-only API (wait, metadata, run_locals...) was called outside a run."""


class MaxDurationExceededError(TriggerCeleryError):
    """The attempt ran longer than its max_duration."""


class RunCanceledError(TriggerCeleryError):
    """The run was canceled while it executed."""


class TriggerFromCanceledRunError(RunCanceledError):
    """A canceled run's code (still running in its grace period) tried to trigger a run;
    nothing was written. It ends the attempt as the cancel it follows, not as a failure."""

    def __init__(self, run_id: str, what: str) -> None:
        super().__init__(
            f"run {run_id} was canceled, so it cannot trigger {what}: nothing was triggered "
            "(stop the run's code when ctx.signal is set)"
        )
        self.run_id = run_id
        self.what = what


class RunExpiredError(TriggerCeleryError):
    """The run's ttl passed before it started (status EXPIRED)."""


class WorkerLostError(TriggerCeleryError):
    """The process running the attempt died or stopped answering (status CRASHED)."""


class LeaseLostError(TriggerCeleryError):
    """The attempt's slot lease was lost and its run moved on; the attempt was stopped."""


class HandleErrorError(TriggerCeleryError):
    """A catch_error hook itself raised (code HANDLE_ERROR_ERROR)."""


class MiddlewareSkippedError(TriggerCeleryError):
    """A middleware returned without calling ``next()``: the run function never ran."""


class SubtaskUnwrapError(TriggerCeleryError):
    """A child run failed and its result was unwrapped."""

    def __init__(self, run_id: str, task_id: str, cause: Any) -> None:
        said = cause
        if isinstance(cause, dict) and "message" in cause:  # the child's error; .cause has all
            said = f"{cause.get('type') or 'Error'}: {cause['message']}"
        super().__init__(f"Run {run_id} of task {task_id!r} did not succeed: {said}")
        self.run_id = run_id
        self.task_id = task_id
        self.cause = cause


class ReplayMismatchError(TriggerCeleryError):
    """On replay, a wait step differs from the one recorded before the run suspended."""


class RunLocalMissingError(TriggerCeleryError, LookupError):
    """``run_locals.get_or_throw`` found no value for a run local."""


class InvalidScheduleError(ConfigurationError):
    """A cron expression, time zone or schedule option is wrong."""


class ScheduleNotFoundError(TriggerCeleryError, LookupError):
    """No schedule has the given id."""


class DeclarativeScheduleError(InvalidScheduleError):
    """A declarative schedule (defined in code) cannot be changed by API or admin."""
