"""``run_locals``: values shared by middleware, hooks and the run function of one attempt.

>>> db = run_locals.create("db")
>>> run_locals.set(db, connection)      # in middleware
>>> run_locals.get_or_throw(db)         # in the run function
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from trigger_celery.core.context import current_scope
from trigger_celery.errors import RunLocalMissingError

T = TypeVar("T")
_ids = itertools.count(1)


@dataclass(frozen=True)
class RunLocal(Generic[T]):
    id: int
    name: str


class _RunLocals:
    def create(self, name: str) -> RunLocal[Any]:
        return RunLocal(next(_ids), name)

    def set(self, local: RunLocal[T], value: T) -> T:
        current_scope("run_locals.set").locals[local.id] = value
        return value

    def get(self, local: RunLocal[T], default: T | None = None) -> T | None:
        return current_scope("run_locals.get").locals.get(local.id, default)

    def get_or_throw(self, local: RunLocal[T]) -> T:
        values = current_scope("run_locals.get_or_throw").locals
        if local.id not in values:
            raise RunLocalMissingError(f"run local {local.name!r} has no value in this run")
        return values[local.id]  # type: ignore[no-any-return]


run_locals = _RunLocals()
