"""Scheduled tasks the schedule tests use (imported by tasks.py, so workers know them)."""

import time

from celery import shared_task

from tests.taskapp import events
from trigger_celery import schedules


@schedules.task(id="sched-record")
def sched_record(payload, ctx):
    """Report the payload it received, under the schedule's id."""
    events.record(
        f"sched:{payload.schedule_id}",
        {
            "run": ctx.run.id,
            "type": payload.type,
            "timestamp": payload.timestamp.isoformat(),
            "last_timestamp": payload.last_timestamp.isoformat()
            if payload.last_timestamp
            else None,
            "timezone": payload.timezone,
            "external_id": payload.external_id,
            "upcoming": [t.isoformat() for t in payload.upcoming],
            "aware": payload.timestamp.tzinfo is not None,
        },
    )
    return {"timestamp": payload.timestamp.isoformat()}


# Declared in code. Yearly, so the shared beat never fires them during a test run.
@schedules.task(
    id="sched-declared-tokyo",
    cron={
        "pattern": "0 5 1 1 *",
        "timezone": "Asia/Tokyo",
        "environments": ["PRODUCTION", "STAGING"],
    },
)
def sched_declared_tokyo(payload, ctx):
    return None


@schedules.task(id="sched-declared-utc", cron="0 0 1 1 *")
def sched_declared_utc(payload, ctx):
    return None


@shared_task(name="tests.plain_periodic")
def plain_periodic(label):
    """A plain Celery task run by a django-celery-beat PeriodicTask."""
    events.record(f"plain-periodic:{label}", time.time())
