"""Global hooks and middleware for the test tasks, imported by every worker."""

import os
import time

from tests.taskapp.tasks import MIDDLEWARE_LOCAL
from trigger_celery import run_locals, tasks
from trigger_celery.core import clock

if os.environ.get("TC_CLOCK_SKEW"):
    # This worker's clock is off by TC_CLOCK_SKEW seconds, as a badly synced machine's.
    _SKEW = clock.travel(float(os.environ["TC_CLOCK_SKEW"]))  # kept: closing it ends it
    _SKEW.__enter__()
    from tests.taskapp import events

    events.record(f"clock-skew:{os.getpid()}", clock.timestamp() - time.time())


def _middleware(ctx, payload, next):
    run_locals.set(MIDDLEWARE_LOCAL, f"set by middleware for {ctx.task.id}")
    return next()


tasks.middleware("test-locals", _middleware)


@tasks.init
def _global_init(ctx):
    return {"from": "global init"}


def settings_on_success(ctx, output):
    """Registered through TRIGGER_CELERY["HOOKS"] in tests/settings.py."""
    from tests.taskapp import events

    events.record(f"settings-hook:{ctx.run.id}", output)
