"""Trigger and queue options, validated once with pydantic (SPEC 4, 5).

Every error names the option and the value it got.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from trigger_celery.core import clock
from trigger_celery.core.durations import MAX_SECONDS, parse_delay, parse_duration
from trigger_celery.core.idempotency import MAX_KEY_LENGTH
from trigger_celery.core.queue_names import queue_name_problem
from trigger_celery.core.retry import MAX_ATTEMPTS_CAP
from trigger_celery.core.serialization import json_size, text_problem, to_jsonable
from trigger_celery.errors import InvalidTriggerOptionError

MACHINE_PRESETS = (
    "micro",
    "small-1x",
    "small-2x",
    "medium-1x",
    "medium-2x",
    "large-1x",
    "large-2x",
)
MAX_TASK_ID_LENGTH = 255
MAX_DEBOUNCE_KEY_LENGTH = 255  # Run.debounce_key's column
MAX_TAGS = 10
MAX_TAG_LENGTH = 128
METADATA_MAX_BYTES = 256 * 1024
_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_RATE = re.compile(r"\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*")
_PERIODS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


def validate_tag(tag: Any) -> str:
    if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_LENGTH:
        raise ValueError(f"tags: {tag!r} is not a string of 1 to {MAX_TAG_LENGTH} characters")
    return storable_text("tags", tag)


def task_id_problem(task_id: Any) -> str | None:
    """What is wrong with a task id, or None: one rule for ``task(id=...)`` and for a
    trigger by id (``tasks.trigger``), so no run is made that no task could serve."""
    if not isinstance(task_id, str) or not task_id.strip() or len(task_id) > MAX_TASK_ID_LENGTH:
        return (
            f"task id must be a non-empty string of at most {MAX_TASK_ID_LENGTH} characters, "
            f"got {task_id!r}"
        )
    # A task's id names its own queue, so it follows the queue names' rule as well.
    problem = text_problem(task_id) or queue_name_problem(task_id)
    return None if problem is None else f"task id {task_id!r} {problem}"


def storable_text(name: str, value: str) -> str:
    """``value``, unless the database cannot store it (a NUL character, a lone
    surrogate): then a ValueError naming the option, on every database alike."""
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"{name}: {value!r} {problem}")
    return value


def parse_rate_limit(value: Any) -> tuple[int, float]:
    """``"100/m"`` -> (100, 60.0)."""
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"rate_limit: {value!r} is not a rate; use e.g. '10/s', '100/m', '1000/h'")
    return int(match.group(1)), _PERIODS[match.group(2)]


def _strict_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: {value!r} is not an int")
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name}: {value!r} is out of range; it must be {bound}")
    return value


def _non_empty_str(name: str, value: Any, max_length: int) -> str:
    if isinstance(value, str) and len(value) > max_length:
        raise ValueError(
            f"{name}: {value[:40]!r}... is {len(value)} characters; the limit is {max_length}"
        )
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"{name}: {value!r} is not a non-empty string of at most {max_length} characters"
        )
    return storable_text(name, value)


class DebounceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    delay: float
    mode: Literal["leading", "trailing"] = "leading"
    max_delay: float | None = None

    @field_validator("key", mode="before")
    @classmethod
    def _key(cls, v: Any) -> str:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)  # debounce={"key": user.id, ...}, as concurrency_key takes it
        return _non_empty_str("debounce.key", v, MAX_DEBOUNCE_KEY_LENGTH)

    @field_validator("delay", mode="before")
    @classmethod
    def _delay(cls, v: Any) -> float:
        seconds = parse_duration(v, name="debounce.delay").total_seconds()
        if seconds <= 0:
            raise ValueError(f"debounce.delay: {v!r} must be longer than 0s")
        return seconds

    @field_validator("max_delay", mode="before")
    @classmethod
    def _max_delay(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v, name="debounce.max_delay").total_seconds()

    @model_validator(mode="after")
    def _max_delay_after_delay(self) -> DebounceOptions:
        # A window no longer than one delay never takes a second trigger: debouncing off.
        if self.max_delay is not None and self.max_delay <= self.delay:
            raise ValueError(
                f"debounce.max_delay ({self.max_delay:g}s) must be longer than "
                f"debounce.delay ({self.delay:g}s)"
            )
        return self


class TriggerOptions(BaseModel):
    """The options every trigger function takes (SPEC 5)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    delay: Any = None
    ttl: int | None = None
    # A str or a tuple of them (``_idempotency_key``); Any so a key made by
    # ``idempotency_keys.create`` (a str subclass: hashed with its scope) keeps its type.
    idempotency_key: Any = None
    idempotency_key_ttl: int | None = None
    debounce: DebounceOptions | None = None
    queue: str | None = None
    concurrency_key: str | None = None
    max_attempts: int | None = None
    tags: tuple[str, ...] | None = None
    metadata: dict[str, Any] | None = None
    max_duration: int | None = None
    priority: float | None = None
    region: str | None = None
    machine: str | None = None

    @field_validator("delay", mode="before")
    @classmethod
    def _delay(cls, v: Any) -> Any:
        if v is not None:
            parse_delay(v, now=clock.now())  # validates; resolved at trigger time
        return v

    @field_validator("ttl", "idempotency_key_ttl", mode="before")
    @classmethod
    def _positive_duration(cls, v: Any, info: Any) -> int | None:
        if v is None:
            return None
        seconds = parse_duration(v, name=info.field_name).total_seconds()
        if seconds < 1:
            raise ValueError(f"{info.field_name}: {v!r} must be at least 1s")
        return math.ceil(seconds)

    @field_validator("max_duration", mode="before")
    @classmethod
    def _max_duration(cls, v: Any) -> int | None:
        if v is None:
            return None
        return math.ceil(parse_duration(v, name="max_duration", minimum=5).total_seconds())

    @field_validator("idempotency_key", mode="before")
    @classmethod
    def _idempotency_key(cls, v: Any) -> Any:
        if v is None:
            return None
        parts = [v] if isinstance(v, str) else v
        if (
            not isinstance(parts, list | tuple)
            or not parts
            or any(not isinstance(p, str) or not p for p in parts)
        ):
            raise ValueError(f"idempotency_key: {v!r} is not a non-empty string or list of strings")
        length = len("-".join(parts))
        if length > MAX_KEY_LENGTH:
            raise ValueError(
                f"idempotency_key is {length} characters; the limit is {MAX_KEY_LENGTH}"
            )
        for part in parts:
            storable_text("idempotency_key", part)
        return v if isinstance(v, str) else tuple(parts)

    @field_validator("queue", mode="before")
    @classmethod
    def _queue(cls, v: Any) -> str | None:
        if v is None:
            return None
        name = _non_empty_str("queue", getattr(v, "name", v), 255)  # or a queue(...)
        problem = queue_name_problem(name)  # the rule queue(name=...) applies, its words
        if problem is not None:
            raise ValueError(f"queue: {name!r} {problem}")
        return name

    @field_validator("concurrency_key", mode="before")
    @classmethod
    def _concurrency_key(cls, v: Any) -> str | None:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)  # concurrency_key=user.id: one copy of the queue per id
        return None if v is None else _non_empty_str("concurrency_key", v, 255)

    @field_validator("max_attempts", mode="before")
    @classmethod
    def _max_attempts(cls, v: Any) -> int | None:
        return None if v is None else _strict_int("max_attempts", v, 1, MAX_ATTEMPTS_CAP)

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, v: Any) -> tuple[str, ...] | None:
        if v is None:
            return None
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list | tuple):
            raise ValueError(f"tags: {v!r} is not a string or a list of strings")
        if len(items) > MAX_TAGS:
            raise ValueError(f"tags: {len(items)} tags given; at most {MAX_TAGS} are allowed")
        return tuple(dict.fromkeys(validate_tag(t) for t in items))  # each tag once, in order

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, v: Any) -> dict[str, Any] | None:
        if v is None:
            return None
        if not isinstance(v, Mapping):
            raise ValueError(f"metadata: {v!r} is not a dict")
        try:
            data = to_jsonable(dict(v), what="metadata")
            size = json_size(data, what="metadata")
        except TypeError as exc:  # SerializationError: report it as a bad option value
            raise ValueError(str(exc)) from None
        if size > METADATA_MAX_BYTES:
            raise ValueError(f"metadata is {size:,} bytes; the limit is {METADATA_MAX_BYTES:,}")
        return dict(data)

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, v: Any) -> float | None:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"priority: {v!r} is not a finite number of seconds")
        if abs(v) > MAX_SECONDS:  # a place in the queue years away is a mistake
            raise ValueError(f"priority: {v!r} is more than 10 years of seconds either way")
        return float(v)

    @field_validator("region", mode="before")
    @classmethod
    def _region(cls, v: Any) -> str | None:
        if v is None:
            return None
        name = _non_empty_str("region", v, 64)
        if not _REGION.fullmatch(name):  # a part of a Celery queue name: region.<name>
            raise ValueError(
                f"region: {name!r} may hold only letters, digits, '-' and '_' (it names the "
                "Celery queue region.<region>, which '.', ',' or a space would confuse)"
            )
        return name

    @field_validator("machine", mode="before")
    @classmethod
    def _machine(cls, v: Any) -> str | None:
        if v is not None and v not in MACHINE_PRESETS:
            raise ValueError(
                f"machine: {v!r} is not a preset; use one of {', '.join(MACHINE_PRESETS)}"
            )
        return None if v is None else str(v)

    @model_validator(mode="after")
    def _one_delay(self) -> TriggerOptions:
        if self.delay is not None and self.debounce is not None:
            raise ValueError(
                f"delay={self.delay!r} and debounce={self.debounce.model_dump()!r}: a debounced "
                "run starts debounce.delay after its last trigger; give one of them"
            )
        return self

    def delay_until(self, now: datetime) -> datetime | None:
        return None if self.delay is None else parse_delay(self.delay, now=now)

    def to_dict(self) -> dict[str, Any]:
        """The options that were set, JSON-able (stored on the run for replay)."""
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, BaseModel):
                value = value.model_dump()
            elif isinstance(value, datetime | date):
                value = value.isoformat()
            elif isinstance(value, timedelta):
                value = value.total_seconds()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


TRIGGER_OPTION_NAMES = tuple(TriggerOptions.model_fields)


def parse_trigger_options(
    options: Mapping[str, Any] | TriggerOptions | None = None, /, **kwargs: Any
) -> TriggerOptions:
    """Validate trigger options given as a dict, keyword arguments, or both."""
    if isinstance(options, TriggerOptions) and not kwargs:
        return options
    merged: dict[str, Any] = {}
    if isinstance(options, TriggerOptions):
        merged.update({k: getattr(options, k) for k in options.model_fields_set})
    elif options is not None:
        if not isinstance(options, Mapping):
            raise ValueError(f"options must be a dict of trigger options, got {options!r}")
        merged.update(options)
    merged.update(kwargs)
    unknown = sorted(set(merged) - set(TRIGGER_OPTION_NAMES))
    if unknown:
        raise ValueError(
            f"unknown trigger option(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(TRIGGER_OPTION_NAMES)}"
        )
    try:
        return TriggerOptions(**merged)
    except ValidationError as exc:  # the validators' own messages, not pydantic's dump
        raise InvalidTriggerOptionError(option_problems(exc)) from None


def option_problems(exc: ValidationError) -> list[tuple[str | None, str]]:
    """``(option, message)`` per error of a ValidationError: a validator's own message
    ("max_attempts: '3' is not an int"), else the option, its value and pydantic's word."""
    problems: list[tuple[str | None, str]] = []
    for err in exc.errors():
        option = ".".join(map(str, err["loc"])) or None
        own = err.get("ctx", {}).get("error")
        message = str(own) if own is not None else f"{option}: {err['input']!r} {err['msg']}"
        problems.append((option.split(".")[0] if option else None, message))
    return problems


# The highest concurrency limit a queue takes, declared in code or overridden.
MAX_QUEUE_LIMIT = 100_000


class QueueOptions(BaseModel):
    """A queue declaration: ``queue(name=..., concurrency_limit=...)`` or a task's dict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    concurrency_limit: int | None = None
    total_limit: int | None = None
    rate_limit: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _key_limit(cls, data: Any) -> Any:
        """``concurrency_key_limit`` is another name for ``concurrency_limit``: the limit
        each concurrency key's copy of the queue gets (``total_limit`` caps them all)."""
        if not isinstance(data, dict) or "concurrency_key_limit" not in data:
            return data
        data = dict(data)
        per_key = data.pop("concurrency_key_limit")
        both = data.get("concurrency_limit") is not None and per_key is not None
        if both and data["concurrency_limit"] != per_key:
            raise ValueError(
                f"concurrency_key_limit={per_key!r} and concurrency_limit="
                f"{data['concurrency_limit']!r} name one limit; give one of them"
            )
        if per_key is not None:
            data["concurrency_limit"] = per_key
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, v: Any) -> str | None:
        return None if v is None else _non_empty_str("queue name", v, 255)

    @field_validator("concurrency_limit", "total_limit", mode="before")
    @classmethod
    def _limit(cls, v: Any, info: Any) -> int | None:
        return None if v is None else _strict_int(info.field_name, v, 1, MAX_QUEUE_LIMIT)

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _rate(cls, v: Any) -> str | None:
        if v is None:
            return None
        parse_rate_limit(v)
        return str(v)
