"""JSON encoding of payloads and outputs, with clear errors for what cannot be encoded."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from trigger_celery.errors import SerializationError


def to_jsonable(value: Any, *, what: str = "value") -> Any:
    """Plain JSON types for ``value`` (pydantic models, dataclasses, datetimes, UUIDs,
    Decimals, enums, tuples and sets are encoded); anything else is a SerializationError
    naming where it was found."""
    return _convert(value, what)


def _convert(value: Any, path: str) -> Any:
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise SerializationError(f"{path} is {value!r}, which JSON cannot represent")
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, str):
                skey = key
            elif isinstance(key, int | float | bool | Enum):
                skey = str(key.value if isinstance(key, Enum) else key)
            else:
                raise SerializationError(
                    f"{path} has a key of type {type(key).__name__!r} ({key!r}); JSON keys are strings"
                )
            out[skey] = _convert(item, f"{path}[{skey!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_convert(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [_convert(item, f"{path}[...]") for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return _convert(value.value, path)
    dump = getattr(value, "model_dump", None)
    if callable(dump) and hasattr(type(value), "model_fields"):
        return _convert(dump(mode="json"), path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _convert(dataclasses.asdict(value), path)
    raise SerializationError(
        f"{path.split('[')[0]} is not JSON-serializable: object of type "
        f"{type(value).__name__!r} at {path}"
    )


def dumps(value: Any, *, what: str = "value") -> str:
    return json.dumps(to_jsonable(value, what=what), separators=(",", ":"), ensure_ascii=False)


def json_size(value: Any) -> int:
    """Bytes of the compact UTF-8 JSON encoding of an already JSON-able value."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
