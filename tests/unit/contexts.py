"""A run's context for unit tests of code that runs inside a run (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

from trigger_celery.core import context as run_context


def a_context(run_id: str = "run_x", task_id: str = "t") -> run_context.Context:
    """The context of attempt 1 of ``run_id``, a run of ``task_id``."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    info = run_context.RunInfo(run_id, [], {}, None, None, None, 0, now, 3, None, None)
    return run_context.Context(
        info,
        run_context.AttemptInfo(1, now),
        run_context.TaskInfo(task_id),
        run_context.QueueInfo(task_id),
        "PRODUCTION",
        None,
    )
