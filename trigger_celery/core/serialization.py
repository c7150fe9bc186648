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

# Lists and dicts a value may be nested in: deeper is refused, not a RecursionError.
MAX_DEPTH = 200


def to_jsonable(value: Any, *, what: str = "value") -> Any:
    """Plain JSON types for ``value`` (pydantic models, dataclasses, datetimes, UUIDs,
    Decimals, enums, tuples and sets are encoded); anything else is a SerializationError
    naming where it was found. Strings are checked by :func:`encode`, when stored."""
    return _convert(value, what, 0)


def _convert(value: Any, path: str, depth: int) -> Any:
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise SerializationError(f"{path} is {value!r}, which JSON cannot represent")
        return value
    if isinstance(value, dict | list | tuple | set | frozenset) and depth >= MAX_DEPTH:
        raise SerializationError(
            f"{path.split('[')[0]} is nested too deep: more than {MAX_DEPTH} levels of "
            "lists and dicts"
        )
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
            out[skey] = _convert(item, f"{path}[{skey!r}]", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_convert(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [_convert(item, f"{path}[...]", depth + 1) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return _convert(value.value, path, depth)
    dump = getattr(value, "model_dump", None)
    if callable(dump) and hasattr(type(value), "model_fields"):
        return _convert(dump(mode="json"), path, depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _convert(dataclasses.asdict(value), path, depth)
    raise SerializationError(
        f"{path.split('[')[0]} is not JSON-serializable: object of type "
        f"{type(value).__name__!r} at {path}"
    )


def dumps(value: Any, *, what: str = "value") -> str:
    return json.dumps(to_jsonable(value, what=what), separators=(",", ":"), ensure_ascii=False)


def encode(value: Any, *, what: str = "value") -> bytes:
    """The compact UTF-8 JSON encoding of an already JSON-able value.

    A string the database cannot store - one with a NUL character (PostgreSQL's text
    and jsonb refuse it) or a lone surrogate (not UTF-8) - is a SerializationError
    naming where it was found, on every database alike. Ordinary strings cost one
    search of the encoded bytes: the value is only walked when that finds something.
    """
    try:
        encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        _refuse_text(value, what)
        raise
    if b"\\u0000" in encoded:  # also a string holding a backslash and "u0000": walked
        _refuse_text(value, what)
    return encoded


def json_size(value: Any, *, what: str = "value") -> int:
    """Bytes of the compact UTF-8 JSON encoding of an already JSON-able value
    (:func:`encode`: a string the database cannot store is refused)."""
    return len(encode(value, what=what))


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None: it has a NUL character or a lone
    surrogate."""
    if "\x00" in text:
        return "contains a NUL character ('\\x00'), which cannot be stored"
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return (
            f"contains a lone surrogate ({text[exc.start]!r}), which is not valid Unicode "
            "and cannot be stored"
        )
    return None


def escape_text(text: str) -> str:
    """``text`` with what the database cannot store written as escapes: a NUL character
    as ``\\x00``, a lone surrogate as ``\\ud800``. For what must be kept whatever it
    holds (log lines, errors); anything else with such a string is refused."""
    if text_problem(text) is None:
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()


def escape_json(value: Any) -> Any:
    """A JSON-able value with every string and key passed through :func:`escape_text`."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {escape_text(str(k)): escape_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_json(item) for item in value]
    return value


def _refuse_text(value: Any, path: str) -> None:
    """Raise a SerializationError for the first string of a JSON-able value, or key,
    that :func:`text_problem` finds fault with; return if there is none."""
    stack = [(value, path)]  # walked in order: the first one is named
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                raise SerializationError(f"{where} {problem}")
        elif isinstance(item, dict):
            for key in item:
                problem = text_problem(key) if isinstance(key, str) else None
                if problem is not None:
                    raise SerializationError(f"{where} has a key {key!r} that {problem}")
            stack.extend((item[k], f"{where}[{k!r}]") for k in reversed(list(item)))
        elif isinstance(item, list | tuple):
            stack.extend((item[i], f"{where}[{i}]") for i in reversed(range(len(item))))
