"""The schedules API (SPEC 8): ``schedules.task`` to define, the rest to manage.

>>> @schedules.task(id="nightly", cron={"pattern": "0 2 * * *", "timezone": "Europe/Paris"})
... def nightly(payload, ctx): ...
>>> s = schedules.create(task="reminder", cron="0 8 * * *", timezone="America/New_York",
...                      external_id="user_1", deduplication_key="user_1-reminder")
>>> schedules.preview("0 9 * * 1L", timezone="Europe/Paris", count=3)

Declarative schedules (``cron=`` on ``schedules.task``) belong to the code: they are
synced by :func:`trigger_celery.engine.schedules.sync_declarative` when a worker starts
and by ``manage.py trigger_sync``, and the API and admin refuse to change them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError

from trigger_celery.api.definitions import scheduled_task
from trigger_celery.api.runs import filter_strings
from trigger_celery.core import clock
from trigger_celery.core import cron as cron_rules
from trigger_celery.core.cron_words import describe
from trigger_celery.core.ids import new_id
from trigger_celery.core.pages import Page, check_limit, keyset_page
from trigger_celery.core.schedules import (
    DECLARATIVE_KEY_PREFIX,
    UPCOMING_COUNT,
    ScheduleSpec,
)
from trigger_celery.core.serialization import text_problem
from trigger_celery.db import write_transaction
from trigger_celery.engine.registry import registry
from trigger_celery.engine.schedules import disabled_here, plan, save_planned, upcoming
from trigger_celery.errors import (
    DeclarativeScheduleError,
    InvalidScheduleError,
    ScheduleNotFoundError,
)
from trigger_celery.models import Schedule
from trigger_celery.off_loop import off_event_loop, off_event_loop_methods

_UNSET: Any = object()


@dataclass(frozen=True)
class ScheduleRecord:
    """A snapshot of a schedule. Datetimes are aware, in UTC.

    ``next_run`` and ``upcoming`` are the ticks that fire in this deployment's
    environment (``TRIGGER_CELERY["ENVIRONMENT"]``): for an inactive schedule, or one
    whose ``environments`` leave this environment out (``fires_here`` False), they are
    None and [], as admin and the dashboard show no fire times for it either.
    """

    id: str
    task: str
    cron: str
    cron_description: str
    timezone: str
    external_id: str | None
    deduplication_key: str
    active: bool
    declarative: bool
    environments: list[str]
    next_run: datetime | None
    upcoming: list[datetime]
    last_run: datetime | None
    problem: str
    created_at: datetime
    updated_at: datetime
    fires_here: bool

    @classmethod
    def from_model(cls, row: Schedule) -> ScheduleRecord:
        fires_here = disabled_here(row) is None
        firing = row.active and fires_here
        times = upcoming(row, clock.now()) if firing else []
        return cls(
            id=row.id,
            task=row.task_identifier,
            cron=row.cron,
            cron_description=describe(row.cron),
            timezone=row.timezone,
            external_id=row.external_id or None,
            deduplication_key=row.deduplication_key,
            active=row.active,
            declarative=row.declarative,
            environments=list(row.environments or []),
            next_run=row.next_tick_at if firing else None,
            upcoming=times,
            last_run=row.last_tick_at,
            problem=row.problem,
            created_at=row.created_at,
            updated_at=row.updated_at,
            fires_here=fires_here,
        )


SchedulePage = Page[ScheduleRecord]


def require_scheduled_task(task_id: object) -> str:
    """``task_id`` if it names a ``schedules.task`` of this project, else a clear error."""
    if not isinstance(task_id, str) or not task_id:
        raise InvalidScheduleError(f"task must be the id of a schedules.task, got {task_id!r}")
    definition = registry.get_task(task_id)
    if definition is None:
        known = ", ".join(scheduled_task_ids()) or "none"
        raise InvalidScheduleError(
            f"task {task_id!r} is not defined; schedules need a schedules.task (known: {known})"
        )
    if not definition.is_scheduled:
        raise InvalidScheduleError(
            f"task {task_id!r} is a plain task; only tasks defined with schedules.task "
            "can be scheduled"
        )
    return task_id


def scheduled_task_ids() -> list[str]:
    """Ids of every ``schedules.task`` defined in this project, sorted."""
    registry.ensure_discovered()
    return sorted(t.id for t in list(registry.tasks.values()) if t.is_scheduled)


def _check_key(value: Any) -> str:
    key = _check_text("deduplication_key", value, required=True)
    if key.startswith(DECLARATIVE_KEY_PREFIX):
        raise InvalidScheduleError(
            f"deduplication_key {key!r}: keys starting with {DECLARATIVE_KEY_PREFIX!r} "
            "are reserved for schedules declared in code"
        )
    return key


def _check_text(name: str, value: object, *, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > 255:
        need = "a non-empty string" if required else "a string"
        raise InvalidScheduleError(
            f"{name} must be {need} of at most 255 characters, got {value!r}"
        )
    problem = text_problem(value)
    if problem is not None:
        raise InvalidScheduleError(f"{name} {value!r} {problem}")
    return value


def _get(schedule_id: str) -> Schedule:
    if not isinstance(schedule_id, str) or not schedule_id:
        raise ValueError(f"expected a schedule id, got {schedule_id!r}")
    if text_problem(schedule_id) is not None:  # no schedule has such an id
        raise ScheduleNotFoundError(f"no schedule with id {schedule_id!r}")
    try:
        return Schedule.objects.get(id=schedule_id)
    except Schedule.DoesNotExist:
        raise ScheduleNotFoundError(f"no schedule with id {schedule_id!r}") from None


def _imperative(row: Schedule, action: str) -> None:
    if row.declarative:
        raise DeclarativeScheduleError(
            f"schedule {row.id} is declared in code (schedules.task {row.task_identifier!r}, "
            f"cron=...); it cannot be {action} by API or admin - change the code instead"
        )


@off_event_loop_methods
class SchedulesAPI:
    """``schedules.task`` plus create / retrieve / list / update / activate / deactivate /
    delete / timezones / preview."""

    def task(self, id: str, run: Any = None, **options: Any) -> Any:
        """Define a scheduled task (see :func:`trigger_celery.api.definitions.scheduled_task`)."""
        return scheduled_task(id, run, **options)

    def create(
        self,
        *,
        task: str,
        cron: str,
        deduplication_key: str,
        timezone: str = "UTC",
        external_id: str | None = None,
        environments: list[str] | None = None,
    ) -> ScheduleRecord:
        """Attach a schedule to a ``schedules.task``; the same ``deduplication_key`` again
        updates that schedule instead of adding one."""
        key = _check_key(deduplication_key)
        require_scheduled_task(task)
        spec = ScheduleSpec.build(cron, timezone, environments)
        ext = _check_text("external_id", external_id, required=False)
        for _ in range(3):
            existing = Schedule.objects.filter(deduplication_key=key).first()
            if existing is not None:
                return self.update(
                    existing.id,
                    task=task,
                    cron=spec.cron,
                    timezone=spec.timezone,
                    external_id=external_id,
                    environments=list(spec.environments),
                )
            row = Schedule(
                id=new_id("sched"),
                task_identifier=task,
                cron=spec.cron,
                timezone=spec.timezone,
                external_id=ext,
                deduplication_key=key,
                environments=list(spec.environments),
            )
            plan(row, clock.now())
            try:
                with write_transaction():
                    row.save(force_insert=True)
            except IntegrityError:
                continue  # created concurrently with the same key: update that one
            return ScheduleRecord.from_model(row)
        raise RuntimeError(f"deduplication_key {key!r} is too contended; try again")

    def retrieve(self, schedule_id: str) -> ScheduleRecord:
        return ScheduleRecord.from_model(_get(schedule_id))

    def list(
        self,
        *,
        task: str | list[str] | None = None,
        active: bool | None = None,
        declarative: bool | None = None,
        external_id: str | None = None,
        limit: int = 25,
        after: str | None = None,
    ) -> SchedulePage:
        """Schedules in id order, ``limit`` per page (1-100), cursor-based."""
        check_limit(limit)
        filters = {
            "task": task,
            "active": active,
            "declarative": declarative,
            "external_id": external_id,
        }
        return _list(filters, limit, after)

    def update(
        self,
        schedule_id: str,
        *,
        task: str = _UNSET,
        cron: str = _UNSET,
        timezone: str = _UNSET,
        external_id: str | None = _UNSET,
        environments: list[str] | None = _UNSET,
        deduplication_key: str = _UNSET,
    ) -> ScheduleRecord:
        """Change an imperative schedule; arguments left out keep their value."""
        row = _get(schedule_id)
        _imperative(row, "updated")
        if deduplication_key is not _UNSET:
            row.deduplication_key = _check_key(deduplication_key)
        if task is not _UNSET:
            row.task_identifier = require_scheduled_task(task)
        new_cron = row.cron if cron is _UNSET else cron
        new_zone = row.timezone if timezone is _UNSET else timezone
        spec = ScheduleSpec.build(
            new_cron, new_zone, row.environments if environments is _UNSET else environments
        )
        if external_id is not _UNSET:
            row.external_id = _check_text("external_id", external_id, required=False)
        changed = (spec.cron, spec.timezone) != (row.cron, row.timezone)
        row.cron, row.timezone = spec.cron, spec.timezone
        row.environments = list(spec.environments)
        # An inactive row keeps no next tick: it is planned when activated (in SQL too).
        replan = row.active and (changed or row.next_tick_at is None)
        try:
            with write_transaction():
                save_planned(row, replan=replan)
        except IntegrityError:
            raise InvalidScheduleError(
                f"deduplication_key {row.deduplication_key!r} is another schedule's"
            ) from None
        return ScheduleRecord.from_model(row)

    def activate(self, schedule_id: str) -> ScheduleRecord:
        """Start firing again, from the next tick after now (missed ticks are not run)."""
        row = _get(schedule_id)
        _imperative(row, "activated")
        if not row.active:
            row.active = True
            save_planned(row, replan=True)
        return ScheduleRecord.from_model(row)

    def deactivate(self, schedule_id: str) -> ScheduleRecord:
        """Stop firing; the schedule is kept and can be activated again."""
        row = _get(schedule_id)
        _imperative(row, "deactivated")
        if row.active:
            row.active = False
            row.next_tick_at = None
            row.problem = ""  # planned afresh when activated again, even in SQL
            row.save()
        return ScheduleRecord.from_model(row)

    def delete(self, schedule_id: str) -> None:
        """Delete an imperative schedule; its past runs are kept."""
        row = _get(schedule_id)
        _imperative(row, "deleted")
        row.delete()

    def timezones(self) -> list[str]:
        """Every IANA time zone name a schedule accepts."""
        return list(cron_rules.timezone_names())

    def preview(
        self,
        cron: str,
        *,
        timezone: str | ZoneInfo = "UTC",
        after: datetime | str | None = None,
        count: int = UPCOMING_COUNT,
    ) -> list[datetime]:
        """The next ``count`` fire times of ``cron`` in ``timezone`` (aware, in UTC) after
        ``after``, an aware datetime or an ISO 8601 string with its offset (default: now)."""
        return cron_rules.preview(cron, timezone=timezone, after=after, count=count)


def _list(filters: dict[str, Any], limit: int, after: str | None) -> SchedulePage:
    qs = Schedule.objects.all()
    task = filters.get("task")
    if task is not None:  # an empty list matches nothing, as in runs.list
        qs = qs.filter(task_identifier__in=filter_strings("schedules.list", "task", task))
    for name in ("active", "declarative"):
        flag = filters.get(name)
        if flag is None:
            continue
        if not isinstance(flag, bool):  # bool("false") is True: never guess
            raise TypeError(f"schedules.list {name}= must be True, False or None, got {flag!r}")
        qs = qs.filter(**{name: flag})
    external_id = filters.get("external_id")
    if external_id is not None:
        if not isinstance(external_id, str):
            raise TypeError(f"schedules.list external_id= must be a string, got {external_id!r}")
        (external_id,) = filter_strings(
            "schedules.list",
            "external_id",
            external_id,
            empty=True,  # "": none given
        )
        qs = qs.filter(external_id=external_id)
    return keyset_page(
        qs,
        limit=limit,
        after=after,
        convert=ScheduleRecord.from_model,
        descending=False,
        wrap=off_event_loop,  # no id_prefix: a schedule loaded from a fixture may have any id
    )


schedules = SchedulesAPI()
