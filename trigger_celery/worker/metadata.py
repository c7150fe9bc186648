"""``metadata`` and ``tags`` of the current run, updated while it executes.

Each change is written to the run row at once (one UPDATE), so the dashboard and the
runs API see progress while the run is still executing.
"""

from __future__ import annotations

import math
from typing import Any

from trigger_celery.core.context import current_scope
from trigger_celery.core.options import MAX_TAGS, validate_tag
from trigger_celery.core.serialization import json_size, to_jsonable
from trigger_celery.engine import realtime
from trigger_celery.models import Run
from trigger_celery.off_loop import off_event_loop_methods

METADATA_MAX_BYTES = 256 * 1024


def _save_metadata(api: str, new: dict[str, Any]) -> None:
    scope = current_scope(api)
    new = to_jsonable(new, what="metadata")
    size = json_size(new, what="metadata")  # a NUL character: a SerializationError
    if size > METADATA_MAX_BYTES:
        raise ValueError(f"metadata would be {size:,} bytes; the limit is {METADATA_MAX_BYTES:,}")
    scope.ctx.run.metadata = new
    Run.objects.filter(id=scope.ctx.run.id).update(metadata=new)
    realtime.notify(scope.ctx.run.id)


@off_event_loop_methods
class RunMetadata:
    """``metadata.set("progress", 0.5)`` and friends, inside a run."""

    def current(self) -> dict[str, Any]:
        return dict(current_scope("metadata.current").ctx.run.metadata)

    def get(self, key: str, default: Any = None) -> Any:
        return current_scope("metadata.get").ctx.run.metadata.get(key, default)

    def set(self, key: str, value: Any) -> None:
        data = self.current()
        data[key] = value
        _save_metadata("metadata.set", data)

    def remove(self, key: str) -> None:
        data = self.current()
        data.pop(key, None)
        _save_metadata("metadata.remove", data)

    def append(self, key: str, value: Any) -> None:
        data = self.current()
        existing = data.get(key)
        if existing is None:
            data[key] = [value]
        elif isinstance(existing, list):
            data[key] = [*existing, value]
        else:
            data[key] = [existing, value]
        _save_metadata("metadata.append", data)

    def increment(self, key: str, amount: float = 1) -> None:
        self._add("metadata.increment", key, amount, 1)

    def decrement(self, key: str, amount: float = 1) -> None:
        self._add("metadata.decrement", key, amount, -1)

    def _add(self, call: str, key: str, amount: float, sign: int) -> None:
        if not _is_number(amount) or not math.isfinite(amount):
            raise ValueError(f"{call}({key!r}): amount {amount!r} is not a finite number")
        data = self.current()
        current = data.get(key, 0)
        if not _is_number(current):
            raise ValueError(f"metadata[{key!r}] is {current!r}, not a number; cannot increment")
        data[key] = current + sign * amount
        _save_metadata(call, data)

    def replace(self, value: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"metadata must be a dict, got {value!r}")
        _save_metadata("metadata.replace", dict(value))


@off_event_loop_methods
class RunTags:
    """``tags.add("user_1")`` inside a run."""

    def add(self, *new: str | list[str]) -> None:
        scope = current_scope("tags.add")
        flat: list[str] = []
        for item in new:
            flat.extend(item if isinstance(item, list) else [item])
        tags = list(scope.ctx.run.tags)
        for tag in flat:
            validate_tag(tag)
            if tag not in tags:
                tags.append(tag)
        if len(tags) > MAX_TAGS:
            raise ValueError(
                f"a run has at most {MAX_TAGS} tags; adding {flat!r} makes {len(tags)}"
            )
        scope.ctx.run.tags = tags
        Run.objects.filter(id=scope.ctx.run.id).update(tags=tags)
        realtime.notify(scope.ctx.run.id)


metadata = RunMetadata()
tags = RunTags()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
