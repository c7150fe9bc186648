"""The result of a finished run, as a waiting parent and the ``on_complete`` hook see it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from trigger_celery.errors import SubtaskUnwrapError


@dataclass(frozen=True)
class RunResult:
    """``.ok`` with ``.output``, or not ``.ok`` with ``.error``; ``.unwrap()`` raises on error.

    >>> result = child.trigger_and_wait({"n": 1})
    >>> result.unwrap()
    """

    ok: bool
    id: str
    task_identifier: str
    output: Any = None
    error: Any = None

    def unwrap(self) -> Any:
        if not self.ok:
            raise SubtaskUnwrapError(self.id, self.task_identifier, self.error)
        return self.output

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ok": self.ok,
            "id": self.id,
            "task_identifier": self.task_identifier,
        }
        if self.ok:
            data["output"] = self.output
        else:
            data["error"] = self.error
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunResult:
        return cls(
            data["ok"], data["id"], data["task_identifier"], data.get("output"), data.get("error")
        )


@dataclass(frozen=True)
class BatchResult:
    """What ``batch_trigger_and_wait`` returns: the batch id and one result per item.

    The results are in item order, in ``.runs``; the batch itself iterates, counts and
    indexes them too (``for r in results``, ``len(results)``, ``results[0]``).
    """

    id: str
    runs: list[RunResult]

    def __iter__(self) -> Iterator[RunResult]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, index: int) -> RunResult:
        return self.runs[index]
