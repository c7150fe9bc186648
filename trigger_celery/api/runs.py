"""The runs API (SPEC 6): ``runs.retrieve`` and ``runs.list``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from trigger_celery.core.handles import RunHandle
from trigger_celery.core.pages import Page, check_limit, keyset_page
from trigger_celery.core.serialization import text_problem
from trigger_celery.core.statuses import (
    EXECUTING_STATUSES,
    FAILED_STATUSES,
    FINAL_STATUSES,
    QUEUED_STATUSES,
    RunStatus,
)
from trigger_celery.engine.actions import cancel_run, replay_run, reschedule_run
from trigger_celery.engine.payloads import load_payload
from trigger_celery.engine.realtime import FALLBACK_SECONDS, Listener
from trigger_celery.errors import RunNotFoundError
from trigger_celery.models import Run
from trigger_celery.off_loop import off_event_loop, off_event_loop_methods


@dataclass(frozen=True)
class AttemptRecord:
    number: int
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    error: dict[str, Any] | None


@dataclass(frozen=True)
class RunRecord:
    """A snapshot of a run, as ``runs.retrieve`` and ``runs.list`` return it."""

    id: str
    task_identifier: str
    status: str
    payload: Any
    output: Any
    error: dict[str, Any] | None
    attempts: list[AttemptRecord]
    attempt_count: int
    tags: list[str]
    metadata: dict[str, Any]
    idempotency_key: str | None
    queue: str
    concurrency_key: str | None
    batch_id: str | None
    parent_id: str | None
    root_id: str | None
    depth: int
    schedule_id: str | None
    created_at: datetime
    updated_at: datetime
    delayed_until: datetime | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    expired_at: datetime | None
    ttl: int | None
    max_attempts: int
    max_duration: int | None
    environment: str
    replayed_from: str | None
    priority: float = 0
    machine: str = ""
    region: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_queued(self) -> bool:
        return self.status in QUEUED_STATUSES

    @property
    def is_executing(self) -> bool:
        return self.status in EXECUTING_STATUSES

    @property
    def is_waiting(self) -> bool:
        return self.status == RunStatus.WAITING

    @property
    def is_completed(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_canceled(self) -> bool:
        return self.status == RunStatus.CANCELED

    @property
    def is_failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def is_success(self) -> bool:
        return self.status == RunStatus.COMPLETED

    @classmethod
    def from_model(cls, run: Run, *, with_attempts: bool = True) -> RunRecord:
        attempts = (
            [
                AttemptRecord(a.number, a.status, a.started_at, a.finished_at, a.error)
                for a in run.attempts.all()
            ]
            if with_attempts
            else []
        )
        return cls(
            id=run.id,
            task_identifier=run.task_identifier,
            status=run.status,
            payload=load_payload(run.payload, run.payload_ref),
            output=load_payload(run.output, run.output_ref),
            error=run.error,
            attempts=attempts,
            attempt_count=run.attempts_begun,
            tags=list(run.tags),
            metadata=dict(run.metadata),
            idempotency_key=run.idempotency_key,
            queue=run.queue,
            concurrency_key=run.concurrency_key,
            batch_id=run.batch_id,
            parent_id=run.parent_id,
            root_id=run.root_id,
            depth=run.depth,
            schedule_id=run.schedule_id,
            created_at=run.created_at,
            updated_at=run.updated_at,
            delayed_until=run.delayed_until,
            queued_at=run.queued_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            expired_at=run.expired_at,
            ttl=run.ttl,
            max_attempts=run.max_attempts,
            max_duration=run.max_duration,
            environment=run.environment,
            replayed_from=run.replayed_from_id,
            priority=run.priority,
            machine=run.machine,
            region=run.region,
            options=dict(run.options),
        )


def _run_id(id_or_handle: str | RunHandle | RunRecord) -> str:
    if isinstance(id_or_handle, RunHandle | RunRecord):
        return id_or_handle.id
    if isinstance(id_or_handle, str) and id_or_handle:
        if text_problem(id_or_handle) is not None:  # no run has such an id
            raise RunNotFoundError(f"no run with id {id_or_handle!r}")
        return id_or_handle
    raise ValueError(f"expected a run id or handle, got {id_or_handle!r}")


def filter_strings(call: str, name: str, value: object, *, empty: bool = False) -> list[str]:
    """A filter of ``call`` (``runs.list``, ``schedules.list``) given as a string or a
    list of strings, as a list: a TypeError for anything else, a ValueError naming a
    string the database could not even compare (a NUL character, a lone surrogate), or
    an empty one unless ``empty`` (a value no row holds, where none was meant)."""
    try:
        values = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    except TypeError:
        values = [value]
    if not all(isinstance(v, str) for v in values):
        raise TypeError(f"{call} {name}= must be a string or a list of strings, got {value!r}")
    for v in values:
        if v == "" and not empty:
            raise ValueError(
                f"{call} {name}=: '' matches nothing; leave the filter out to match everything"
            )
        problem = text_problem(v)
        if problem is not None:
            raise ValueError(f"{call} {name}=: {v!r} {problem}")
    return list(values)


def _strings(name: str, value: object) -> list[str]:
    return filter_strings("runs.list", name, value)


def _referenced(name: str, value: object, attr: str) -> list[str]:
    """A batch, schedule or queue filter: an id (a queue's name), a handle or record
    (its ``.id``; a queue's ``.name``), or a list of them."""
    items = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
    return _strings(name, [getattr(v, attr, v) for v in items])


RunPage = Page[RunRecord]


def _list(filters: dict[str, Any], limit: int, after: str | None) -> RunPage:
    qs = Run.objects.all().prefetch_related("attempts")
    # A filter given (not None) always filters: an empty list matches no run (it was
    # skipped, and every run matched, e.g. ``batch=[b.id for b in none]``).
    status = filters.get("status")
    if status is not None:
        statuses = _strings("status", status)
        bad = [s for s in statuses if s not in RunStatus.__members__]
        if bad:
            raise ValueError(f"unknown status {bad!r}; use one of {', '.join(RunStatus)}")
        qs = qs.filter(status__in=statuses)
    task_identifier = filters.get("task_identifier")
    if task_identifier is not None:
        qs = qs.filter(task_identifier__in=_strings("task_identifier", task_identifier))
    qs = qs.created_between(filters.get("from_"), filters.get("to"))
    tag = filters.get("tag")
    if tag is not None:
        tags = _strings("tag", tag)
        qs = qs.with_tag(*tags) if tags else qs.none()  # any of them
    for name, column, attr in (
        ("batch", "batch_id", "id"),
        ("schedule", "schedule_id", "id"),
        ("queue", "queue", "name"),
    ):
        value = filters.get(name)
        if value is not None:
            qs = qs.filter(**{f"{column}__in": _referenced(name, value, attr)})
    return keyset_page(
        qs,
        limit=limit,
        after=after,
        convert=RunRecord.from_model,
        wrap=off_event_loop,
        id_prefix="run",
    )


def _moment(name: str, value: object) -> datetime | None:
    """A bound of ``runs.list``: a datetime (naive is UTC) or a date (its midnight, UTC)."""
    if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
        return value
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ValueError(f"runs.list {name}= must be a datetime or a date, got {value!r}")


@off_event_loop_methods
class RunsAPI:
    """``runs.retrieve(id)``, ``runs.list(...)``."""

    def retrieve(self, id_or_handle: str | RunHandle | RunRecord) -> RunRecord:
        run_id = _run_id(id_or_handle)
        try:
            run = Run.objects.prefetch_related("attempts").get(id=run_id)
        except Run.DoesNotExist:
            raise RunNotFoundError(f"no run with id {run_id!r}") from None
        return RunRecord.from_model(run)

    def list(
        self,
        *,
        status: str | list[str] | None = None,
        task_identifier: str | list[str] | None = None,
        from_: datetime | None = None,
        to: datetime | None = None,
        tag: str | list[str] | None = None,
        batch: str | Any | None = None,
        schedule: str | Any | None = None,
        queue: str | Any | None = None,
        limit: int = 25,
        after: str | None = None,
    ) -> RunPage:
        """Runs, newest first, ``limit`` per page (1-100); cursor-based, stable under inserts.

        ``batch``, ``schedule``: an id, a handle or record, or a list of them; ``queue``: a
        name, a ``queue(...)``, or a list of them. Several values match any of them."""
        check_limit(limit)
        filters = {
            "status": status,
            "task_identifier": task_identifier,
            "from_": _moment("from_", from_),
            "to": _moment("to", to),
            "tag": tag,
            "batch": batch,
            "schedule": schedule,
            "queue": queue,
        }
        return _list(filters, limit, after)

    def subscribe_to_run(self, id_or_handle: str | RunHandle | RunRecord) -> Iterator[RunRecord]:
        """Yield a snapshot each time the run changes (status, metadata, tags, output),
        starting with its current state and ending after a final status.

        With Redis, changes are pushed (pub/sub); the embedded default re-reads the row
        at a short interval.
        """
        run_id = _run_id(id_or_handle)
        last: tuple[Any, ...] | None = None
        with Listener(run_id) as listener:  # subscribe before the first read: no gap
            while True:
                record = self.retrieve(run_id)
                key = (
                    record.status,
                    record.metadata,
                    record.tags,
                    record.output,
                    record.attempt_count,
                )
                if key != last:
                    last = key
                    yield record
                if record.is_completed:
                    return
                listener.wait(FALLBACK_SECONDS)

    # -- actions ---------------------------------------------------------------------------
    def cancel(self, id_or_handle: str | RunHandle | RunRecord) -> RunRecord:
        """Cancel a run (and its children still in progress). A finished run: no-op.

        A DELAYED, QUEUED or dispatched run never executes. An executing run is marked
        CANCELED at once (late writes of its worker are rejected); its worker sets the
        abort signal, runs ``on_cancel`` hooks and then stops the attempt.
        """
        cancel_run(_run_id(id_or_handle))
        return self.retrieve(id_or_handle)

    def replay(
        self, id_or_handle: str | RunHandle | RunRecord, *args: Any, **overrides: Any
    ) -> RunHandle:
        """A new run with the same options, linked to the original, and the same payload
        or the one given: ``runs.replay(run)``, ``runs.replay(run, {"edited": 1})``,
        ``runs.replay(run, payload=...)``; other keywords override trigger options."""
        if len(args) > 1:
            raise TypeError(f"runs.replay takes a run and at most one payload, got {len(args) + 1}")
        if args and "payload" in overrides:
            raise TypeError("runs.replay got the payload twice (positional and payload=)")
        if args:
            return replay_run(_run_id(id_or_handle), overrides, args[0])
        if "payload" in overrides:
            payload = overrides.pop("payload")
            return replay_run(_run_id(id_or_handle), overrides, payload)
        return replay_run(_run_id(id_or_handle), overrides)

    def reschedule(self, id_or_handle: str | RunHandle | RunRecord, *, delay: Any) -> RunRecord:
        """Move a DELAYED run's start; any other status is an ``InvalidRunStateError``."""
        reschedule_run(_run_id(id_or_handle), delay)
        return self.retrieve(id_or_handle)


runs = RunsAPI()
