"""Handles returned by trigger calls."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunHandle:
    """The id of a run a trigger created (or, with ``is_cached``, found by idempotency key)."""

    id: str
    task_identifier: str
    is_cached: bool = False

    def __str__(self) -> str:
        return self.id
