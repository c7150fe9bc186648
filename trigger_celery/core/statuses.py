"""Run and attempt statuses, and the groups the runs API reasons about."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING_VERSION = "PENDING_VERSION"
    DELAYED = "DELAYED"
    QUEUED = "QUEUED"
    DEQUEUED = "DEQUEUED"
    EXECUTING = "EXECUTING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CRASHED = "CRASHED"
    SYSTEM_FAILURE = "SYSTEM_FAILURE"
    EXPIRED = "EXPIRED"


class AttemptStatus(StrEnum):
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SUSPENDED = "SUSPENDED"
    CANCELED = "CANCELED"
    CRASHED = "CRASHED"


QUEUED_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.PENDING_VERSION, RunStatus.DELAYED})
EXECUTING_STATUSES = frozenset({RunStatus.EXECUTING, RunStatus.DEQUEUED})
FAILED_STATUSES = frozenset(
    {
        RunStatus.FAILED,
        RunStatus.TIMED_OUT,
        RunStatus.CRASHED,
        RunStatus.SYSTEM_FAILURE,
        RunStatus.EXPIRED,
    }
)
FINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.CANCELED} | FAILED_STATUSES)
# Statuses that keep an idempotency key claimed; a run that ends in any other final
# status releases its key so the next trigger makes a new run.
IDEMPOTENCY_HOLDING_STATUSES = frozenset(RunStatus) - FAILED_STATUSES
