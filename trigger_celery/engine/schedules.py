"""Firing schedules (SPEC 8): run by the pump, so by every beat and by ``trigger_dev``.

Each schedule row carries ``next_tick_at``, the instant of its next tick. A pass:

1. **plans** rows whose ``next_tick_at`` is missing or was computed for another cron or
   time zone (``next_tick_for``) - rows written by SQL, fixtures or an older version -
   so an edit made anywhere is picked up within a few seconds, with no restart;
2. **fires** every active row whose ``next_tick_at`` has come: in one transaction it
   moves ``next_tick_at`` on with a compare-and-set on the row's ``version``, which
   every write of the row moves on (so an edit saved after the row was read makes the
   pass leave the tick to the next one, which fires it with the edited values), and
   inserts the tick's run. Of several beats that race for one tick exactly one wins the
   compare-and-set, and the unique (schedule, tick time) key on runs backs that up. A
   beat killed mid-way rolls its transaction back, so the tick is left for the next
   pass of any beat.

Declarative schedules (``schedules.task(cron=...)``) are made to match the code by
:func:`sync_declarative`, when a worker starts and on ``manage.py trigger_sync``.

Ticks missed while no beat ran are not caught up one by one: the pending tick fires once,
late, and the schedule continues from its next future tick. A row that cannot be planned
or fired (a corrupt cron, a task that no longer exists) is skipped, logged and its
``problem`` set, where admin shows it; the other schedules are not held up.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat

from trigger_celery.conf import get_settings
from trigger_celery.core import clock, run_events, tracing
from trigger_celery.core.cron import fire_times, get_zone, parse_cron
from trigger_celery.core.ids import new_id
from trigger_celery.core.options import parse_trigger_options
from trigger_celery.core.schedules import DECLARATIVE_KEY_PREFIX, UPCOMING_COUNT, ScheduledPayload
from trigger_celery.core.statuses import RunStatus
from trigger_celery.db import write_transaction
from trigger_celery.engine import dispatch
from trigger_celery.engine.registry import TaskDefinition, registry
from trigger_celery.engine.triggering import build_run
from trigger_celery.errors import InvalidScheduleError
from trigger_celery.models import Run, Schedule
from trigger_celery.schedule_models import bump

log = logging.getLogger("trigger_celery.schedules")

PLAN_EVERY = 2.0
BATCH = 200


@dataclass(frozen=True)
class Fired:
    """One tick a pass handled: the run it created, or why it did not create one."""

    schedule_id: str
    tick_at: datetime
    run_id: str | None = None
    skipped: str | None = None


def plan(schedule: Schedule, now: datetime) -> None:
    """Set ``next_tick_at`` (first tick after ``now``), ``next_tick_for`` and ``problem``
    on the instance; the caller saves it. A bad cron or time zone becomes a problem."""
    schedule.next_tick_for = schedule.fingerprint
    try:
        expression = parse_cron(schedule.cron)
        zone = get_zone(schedule.timezone)
        schedule.next_tick_at = fire_times(expression, zone, after=now, count=1)[0]
        schedule.problem = ""
    except InvalidScheduleError as exc:
        schedule.next_tick_at = None
        schedule.problem = str(exc)


def upcoming(schedule: Schedule, now: datetime, count: int = UPCOMING_COUNT) -> list[datetime]:
    """The next ``count`` fire times of a row ([] when its cron or time zone is bad)."""
    try:
        return fire_times(
            parse_cron(schedule.cron), get_zone(schedule.timezone), after=now, count=count
        )
    except InvalidScheduleError:
        return []


class ScheduleTicker:
    """The schedule part of one pump pass; keeps when it last planned."""

    def __init__(self) -> None:
        self._last_plan = 0.0

    def tick(self, now: datetime | None = None) -> list[Fired]:
        now = now or clock.now()
        if time.monotonic() - self._last_plan >= PLAN_EVERY:
            self._last_plan = time.monotonic()
            plan_stale(now)
        return fire_due(now)


def plan_stale(now: datetime) -> int:
    """Plan active rows that were never planned or whose cron/time zone changed.

    An inactive row keeps no next tick, as ``schedules.deactivate`` leaves it: one
    deactivated in SQL kept its tick, and fired it late when activated again."""
    Schedule.objects.filter(active=False, next_tick_at__isnull=False).update(
        next_tick_at=None, problem="", **bump()
    )  # tc_schedule_due finds them
    stale = (
        Schedule.objects.filter(active=True)
        .filter(
            Q(next_tick_at__isnull=True, problem="")
            | ~Q(next_tick_for=Concat(F("cron"), Value("|"), F("timezone")))
        )
        .order_by("id")[:BATCH]
    )
    count = 0
    for schedule in stale:
        try:
            plan(schedule, now)
        except Exception as exc:  # one row we cannot plan must not stop the others
            log.exception("schedule %s could not be planned", schedule.id)
            schedule.next_tick_at = None
            schedule.problem = f"could not plan: {exc}"[:2000]
        Schedule.objects.filter(
            id=schedule.id, cron=schedule.cron, timezone=schedule.timezone
        ).update(
            next_tick_at=schedule.next_tick_at,
            next_tick_for=schedule.next_tick_for,
            problem=schedule.problem,
            **bump(),
        )
        if schedule.problem:
            log.warning("schedule %s is skipped: %s", schedule.id, schedule.problem)
        count += 1
    return count


def fire_due(now: datetime, *, budget_seconds: float = 2.0) -> list[Fired]:
    """Fire every active schedule whose tick has come; one bad row never stops the rest.

    Works in batches until no tick is due or ``budget_seconds`` passed, so thousands of
    schedules due at the same minute do not starve the pump's other duties.
    """
    results: list[Fired] = []
    deadline = time.monotonic() + budget_seconds
    stuck: set[str] = set()  # due rows this pass leaves due (edited, or failing)
    while True:
        due = list(
            Schedule.objects.filter(active=True, next_tick_at__lte=now)
            .exclude(id__in=stuck)
            .order_by("next_tick_at")[:BATCH]
        )
        for schedule in due:
            try:
                fired = _fire(schedule, now)
            except Exception as exc:  # a row we cannot handle must not stop the others
                log.exception("schedule %s could not fire", schedule.id)
                Schedule.objects.filter(id=schedule.id).update(
                    problem=f"could not fire: {exc}"[:2000], **bump()
                )
                fired = None
            if fired is None:
                stuck.add(schedule.id)
            else:
                results.append(fired)
        if len(due) < BATCH or time.monotonic() > deadline:
            return results


def _fire(schedule: Schedule, now: datetime) -> Fired | None:
    tick = schedule.next_tick_at
    assert tick is not None
    if schedule.next_tick_for != schedule.fingerprint:
        return None  # edited since it was planned: plan_stale recomputes it first
    try:
        expression = parse_cron(schedule.cron)
        zone = get_zone(schedule.timezone)
    except InvalidScheduleError as exc:
        _set_problem(schedule, str(exc), next_tick_at=None)
        return Fired(schedule.id, tick, skipped=str(exc))
    following = fire_times(expression, zone, after=max(tick, now), count=UPCOMING_COUNT)
    definition = registry.get_task(schedule.task_identifier)
    problem = _task_problem(schedule, definition)  # reported in admin
    if definition is None and now < fire_times(expression, zone, after=tick, count=1)[0]:
        # A beat of another deployment (a rolling deploy) may know the task: the tick is
        # left to it, as to a beat that is not there, until the next tick is due.
        Schedule.objects.filter(id=schedule.id, version=schedule.version).exclude(
            problem=problem
        ).update(problem=problem, **bump())
        return None
    skipped = problem or disabled_here(schedule)  # a skip that is not a problem
    with write_transaction():
        fields = {"next_tick_at": following[0]}
        if skipped is None:
            fields.update(last_tick_at=tick, problem="")
        elif problem is not None:
            fields["problem"] = problem
        # The row as this pass read it: an edit may keep the same tick, and the run is
        # built from what was read (task, environments, external id, ...). Every write
        # of a schedule (a save, another beat's firing) moves its version on, so
        # comparing it covers each field; cron, time zone and task are compared too for
        # edits made in SQL. Neither updated_at nor next_tick_at is compared: a datetime
        # another tool wrote in another spelling never equals ours on SQLite. A beat of
        # the release before moves no version: the run's unique tick key stops a second
        # run of a tick it fired while an upgrade rolls out.
        moved = Schedule.objects.filter(
            id=schedule.id,
            version=schedule.version,
            active=True,
            cron=schedule.cron,
            timezone=schedule.timezone,
            task_identifier=schedule.task_identifier,
        ).update(**fields, **bump())
        if not moved:
            return None  # another beat fired this tick, or the row changed meanwhile
        if skipped is not None:
            if problem is not None:
                log.warning("schedule %s skipped its %s tick: %s", schedule.id, tick, problem)
            return Fired(schedule.id, tick, skipped=skipped)
        assert definition is not None
        run, span = _tick_run(schedule, definition, tick, following)
        try:
            with write_transaction():
                run.save(force_insert=True)
                # Counted as a trigger (and a schedule firing) once it commits.
                transaction.on_commit(partial(run_events.publish, run.id, run_events.TRIGGERED))
                if span is not None:
                    # Ended (and so exported) once the run exists: never inside the
                    # transaction, nor for a run another beat's tick made instead.
                    transaction.on_commit(span.end)
        except IntegrityError:
            return Fired(schedule.id, tick, skipped="this tick already has its run")
    if run.status == RunStatus.QUEUED:
        transaction.on_commit(lambda: dispatch.after_commit_dispatch([run]))
    log.info("schedule %s fired its %s tick: run %s", schedule.id, tick.isoformat(), run.id)
    return Fired(schedule.id, tick, run_id=run.id)


def _task_problem(schedule: Schedule, definition: TaskDefinition | None) -> str | None:
    if definition is None:
        return f"task {schedule.task_identifier!r} is not defined in this deployment"
    if not definition.is_scheduled:
        return f"task {schedule.task_identifier!r} is not a schedules.task"
    return None


def disabled_here(schedule: Schedule) -> str | None:
    """Why ``schedule`` does not fire in this deployment's environment (None: it does)."""
    environment = get_settings().ENVIRONMENT
    if schedule.environments and environment not in schedule.environments:
        return f"not enabled in the {environment} environment"
    return None


def _tick_run(
    schedule: Schedule, definition: TaskDefinition, tick: datetime, following: list[datetime]
) -> tuple[Run, Any]:
    """The tick's run, and its trigger span, left open for the caller to end (None when
    tracing is off)."""
    payload = ScheduledPayload(
        type="DECLARATIVE" if schedule.declarative else "IMPERATIVE",
        timestamp=tick,
        last_timestamp=schedule.last_tick_at,
        timezone=schedule.timezone,
        schedule_id=schedule.id,
        external_id=schedule.external_id or None,
        upcoming=following,
    )
    # The tick is the run's trigger: its producer span, whose context the row carries to
    # the attempts, as a trigger() call's does.
    attributes = {"trigger_celery.task": definition.id, "trigger_celery.schedule_id": schedule.id}
    with tracing.open_producer_span(f"trigger {definition.id}", attributes=attributes) as sp:
        run = build_run(definition.id, payload.to_json(), parse_trigger_options(None), definition)
        if sp is not None:
            sp.set_attribute("trigger_celery.run_id", run.id)
    run.schedule_id = schedule.id
    run.schedule_tick_at = tick
    return run, sp


def _set_problem(schedule: Schedule, problem: str, *, next_tick_at: datetime | None) -> None:
    log.warning("schedule %s is skipped: %s", schedule.id, problem)
    Schedule.objects.filter(id=schedule.id, version=schedule.version).update(
        problem=problem, next_tick_at=next_tick_at, next_tick_for=schedule.fingerprint, **bump()
    )


def save_planned(row: Schedule, *, replan: bool) -> None:
    """Save a schedule row, planning its next tick first when ``replan``."""
    if replan:
        plan(row, clock.now())
    row.save()


# -- declarative schedules ---------------------------------------------------------------


def sync_declarative() -> dict[str, int]:
    """Make the declarative schedules in the database match the code of this process.

    Creates a schedule for each ``schedules.task`` with ``cron=``, updates those whose
    cron, time zone or environments changed, and deletes those whose task is gone or no
    longer declares one. Safe to run from several workers at once.
    """
    registry.ensure_discovered()
    declared = {
        t.id: t.declared_schedule
        for t in list(registry.tasks.values())
        if t.is_scheduled and t.declared_schedule is not None
    }
    counts = {"created": 0, "updated": 0, "deleted": 0}
    now = clock.now()
    for task_id, spec in sorted(declared.items()):
        assert spec is not None
        key = f"{DECLARATIVE_KEY_PREFIX}{task_id}"
        with write_transaction():
            row = Schedule.objects.select_for_update().filter(deduplication_key=key).first()
            if row is None:
                row = Schedule(
                    id=new_id("sched"),
                    task_identifier=task_id,
                    deduplication_key=key,
                    declarative=True,
                    cron=spec.cron,
                    timezone=spec.timezone,
                    environments=list(spec.environments),
                )
                plan(row, now)
                try:
                    with write_transaction():
                        row.save(force_insert=True)
                    counts["created"] += 1
                except IntegrityError:
                    pass  # another worker created it at the same moment
                continue
            wanted = (spec.cron, spec.timezone, list(spec.environments), True, True)
            have = (row.cron, row.timezone, list(row.environments), row.active, row.declarative)
            if wanted != have:
                replan = (row.cron, row.timezone, row.active) != (spec.cron, spec.timezone, True)
                row.cron, row.timezone = spec.cron, spec.timezone
                row.environments = list(spec.environments)
                row.active = row.declarative = True
                save_planned(row, replan=replan)
                counts["updated"] += 1
    gone = Schedule.objects.filter(declarative=True).exclude(
        deduplication_key__in=[f"{DECLARATIVE_KEY_PREFIX}{t}" for t in declared]
    )
    _, per_model = gone.delete()
    counts["deleted"] = per_model.get(Schedule._meta.label, 0)
    if any(counts.values()):
        log.info("declarative schedules synced: %s", counts)
    return counts
