"""Tasks the integration tests trigger; they report what they saw through ``events``."""

import asyncio
import os
import signal
import socket
import sys
import time

from pydantic import BaseModel

from tests.taskapp import events
from trigger_celery import AbortTaskRunError, logger, metadata, queue, run_locals, schema_task, task
from trigger_celery.errors import MaxDurationExceededError, ReplayMismatchError, RunCanceledError
from trigger_celery.worker.run_locals import RunLocal

FAST_RETRY = {"max_attempts": 3, "min_timeout_in_ms": 100, "max_timeout_in_ms": 1000, "factor": 2}


@task(id="hello-world")
def hello_world(payload, ctx):
    logger.info("hello", who=payload.get("message"))
    return {"message": payload["message"], "attempt": ctx.attempt.number, "run": ctx.run.id}


@task(
    id="flaky",
    retry={"max_attempts": 4, "min_timeout_in_ms": 1000, "factor": 2, "randomize": False},
)
def flaky(payload, ctx):
    events.record(f"flaky:{ctx.run.id}", ctx.attempt.number)
    if ctx.attempt.number < payload["succeed_on"]:
        raise RuntimeError(f"attempt {ctx.attempt.number} fails on purpose")
    return {"succeeded_on": ctx.attempt.number}


def _record_failure(ctx, error):
    events.record(f"on_failure:{ctx.run.id}", str(error))


@task(id="always-fails", retry=FAST_RETRY, on_failure=_record_failure)
def always_fails(payload, ctx):
    events.record(f"attempts:{ctx.run.id}", ctx.attempt.number)
    raise ValueError("this task always fails")


@task(id="aborts", retry=FAST_RETRY)
def aborts(payload, ctx):
    events.record(f"attempts:{ctx.run.id}", ctx.attempt.number)
    raise AbortTaskRunError("stop right here")


class Greeting(BaseModel):
    name: str
    count: int = 1


@schema_task(id="greet", schema=Greeting, retry=FAST_RETRY)
def greet(payload: Greeting, ctx):
    events.record(f"attempts:{ctx.run.id}", ctx.attempt.number)
    return {"type": type(payload).__name__, "text": f"hello {payload.name}" * payload.count}


def _skip(error):
    return {"skip_retrying": True}


@task(id="catch-skip", retry=FAST_RETRY, catch_error=_skip)
def catch_skip(payload, ctx):
    events.record(f"attempts:{ctx.run.id}", ctx.attempt.number)
    raise RuntimeError("skip me")


def _broken_handler(error):
    raise KeyError("the handler itself is broken")


@task(id="catch-raises", retry=FAST_RETRY, catch_error=_broken_handler)
def catch_raises(payload, ctx):
    raise RuntimeError("original problem")


def _retry_soon(error, retry_delay_in_ms):
    return {"retry_delay_in_ms": 50}


@task(
    id="catch-delay",
    retry={"max_attempts": 2, "min_timeout_in_ms": 30_000},
    catch_error=_retry_soon,
)
def catch_delay(payload, ctx):
    if ctx.attempt.number == 1:
        raise RuntimeError("first attempt fails")
    return "second attempt"


def _hook(name):
    def hook(ctx):
        events.record(f"hooks:{ctx.run.id}", name)

    return hook


@task(
    id="hook-order",
    retry=FAST_RETRY,
    on_start_attempt=_hook("on_start_attempt"),
    on_success=_hook("on_success"),
    on_complete=_hook("on_complete"),
    on_failure=_hook("on_failure"),
)
def hook_order(payload, ctx):
    events.record(f"hooks:{ctx.run.id}", "run")
    if ctx.attempt.number == 1:
        raise RuntimeError("first attempt fails")
    return "ok"


@task(id="bad-output", retry=FAST_RETRY)
def bad_output(payload, ctx):
    events.record(f"attempts:{ctx.run.id}", ctx.attempt.number)
    return {"socket": object()}


class _Unshowable:
    """A value JSON cannot hold whose repr fails too."""

    def __repr__(self) -> str:
        raise RecursionError("maximum recursion depth exceeded")


@task(id="bad-strings", retry=FAST_RETRY)
def bad_strings(payload, ctx):
    """Strings the database cannot store, from inside a run: ``payload["do"]`` says where."""
    events.record(f"attempts:{ctx.run.id}", ctx.attempt.number)
    if payload["do"] == "log":
        logger.info("a\x00b\ud800", note="c\x00d", **{"k\x00": ["\ud800"]})
        return "logged"
    if payload["do"] == "metadata":
        try:
            metadata.set("x", "a\x00")
        except TypeError as exc:
            return str(exc)
        return "stored"
    if payload["do"] == "raise":
        raise ValueError("a\x00b")
    if payload["do"] == "increment":  # amounts that are not numbers
        refused = []
        for amount in ("5", True, float("nan"), None):
            for call in (metadata.increment, metadata.decrement):
                try:
                    call("n", amount)
                except ValueError as exc:
                    refused.append(str(exc))
        metadata.increment("n", 3)
        metadata.decrement("n", 1.5)
        return refused
    if payload["do"] == "deep-log":
        deep: list = []
        inner = deep
        for _ in range(1000):  # deeper than JSON is stored (repr copes from Python 3.12)
            inner.append([])
            inner = inner[0]
        logger.info("deep", deep=deep, broken=_Unshowable(), ok=1)
        return "logged"
    return {"out": "a\x00b"}


@task(id="async-task")
async def async_task(payload, ctx):
    await asyncio.sleep(0.01)
    return {"doubled": payload["n"] * 2, "attempt": ctx.attempt.number}


@task(id="async-uses-the-api", retry={"max_attempts": 1})
async def async_uses_the_api(payload, ctx):
    """Every blocking call a run makes, from an async run function."""
    from trigger_celery import runs, tags, wait

    metadata.set("progress", 0.5)
    logger.info("from async", n=payload["n"])
    tags.add("async-tag")
    sibling = echo.trigger({"from": "async"})
    child = echo.trigger_and_wait({"n": payload["n"]}).unwrap()
    await asyncio.sleep(0)
    wait.for_(seconds=1)
    return {
        "child": child["payload"],
        "sibling": runs.retrieve(sibling.id).task_identifier,
        "attempt": ctx.attempt.number,
    }


MIDDLEWARE_LOCAL: RunLocal = run_locals.create("middleware-value")


@task(id="uses-middleware")
def uses_middleware(payload, ctx):
    metadata.set("progress", 1)
    return {"local": run_locals.get_or_throw(MIDDLEWARE_LOCAL), "init": ctx.init}


ASYNC_LOCAL: RunLocal = run_locals.create("async-middleware-value")


async def _async_middleware(ctx, next):
    run_locals.set(ASYNC_LOCAL, "set by async middleware")
    return next()


async def _awaiting_middleware(ctx, next):
    """Trigger.dev's shape: ``await next()`` is the output of the steps inside."""
    output = await next()
    events.record(f"awaited-next:{ctx.run.id}", output)
    return output


@task(
    id="async-behind-async-middleware",
    middleware={"async-locals": _async_middleware, "awaits": _awaiting_middleware},
)
async def async_behind_async_middleware(payload, ctx):
    metadata.set("seen", run_locals.get_or_throw(ASYNC_LOCAL))
    logger.info("behind async middleware")
    return run_locals.get_or_throw(ASYNC_LOCAL)


def _forgets_next(ctx, next):
    """A middleware that returns without calling ``next()``."""
    return "never ran"


@task(id="behind-forgetful-middleware", retry={"max_attempts": 1}, middleware={"x": _forgets_next})
def behind_forgetful_middleware(payload, ctx):
    events.record(f"ran:{ctx.run.id}", True)
    return "ran"


@task(id="orm-behind-async-middleware", middleware={"awaits": _awaiting_middleware})
def orm_behind_async_middleware(payload, ctx):
    """A sync run function using the ORM, wrapped by Trigger.dev-shaped middleware."""
    from trigger_celery.models import Run

    metadata.set("seen", True)
    return {"rows": Run.objects.filter(id=ctx.run.id).count()}


@task(
    id="stubborn-behind-async-middleware",
    retry={"max_attempts": 1},
    middleware={"awaits": _awaiting_middleware},
)
def stubborn_behind_async_middleware(payload, ctx):
    deadline = time.time() + payload.get("seconds", 30)
    while time.time() < deadline:
        time.sleep(0.05)  # ignores ctx.signal on purpose
    return "finished"


@task(id="async-sleeper", retry={"max_attempts": 1})
async def async_sleeper(payload, ctx):
    """Waits in one await, as async code does (asyncio.sleep, an HTTP call...)."""
    events.record(f"async-sleeping:{ctx.run.id}", ctx.attempt.number)
    await asyncio.sleep(payload.get("seconds", 60))
    return "slept"


@task(id="chatty", retry=FAST_RETRY)
def chatty(payload, ctx):
    """Logs past the per-run bound across two attempts, with attributes JSON cannot hold."""
    logger.info("an object", thing=object())
    logger.info("a big one", blob="x" * 50_000)
    for i in range(3):
        logger.info(f"line {i} of attempt {ctx.attempt.number}")
    if ctx.attempt.number == 1:
        raise RuntimeError("once more")
    return "said enough"


@task(id="sleepy")
def sleepy(payload, ctx):
    import time

    events.record(f"start:{payload.get('tag', 'sleepy')}", ctx.run.id)
    time.sleep(payload.get("seconds", 1))
    events.record(f"end:{payload.get('tag', 'sleepy')}", ctx.run.id)
    return "slept"


def _retry_in_a_minute(error):
    return {"retry_delay_in_ms": 60_000}


@task(id="retry-later", retry={"max_attempts": 2}, catch_error=_retry_in_a_minute)
def retry_later(payload, ctx):
    raise RuntimeError("come back in a minute")


def _record(name):
    # Hooks get only the keyword arguments they name: ctx always, result for on_complete.
    def hook(ctx, result=None):
        detail = {"ok": result.ok, "output": result.output} if result is not None else None
        events.record(f"all-hooks:{ctx.run.id}", [name, ctx.attempt.number, detail])
        if name == "init":
            return {"attempt": ctx.attempt.number}
        if name == "on_success":
            raise RuntimeError("on_success hooks may fail without failing the run")
        return None

    return hook


@task(
    id="all-hooks",
    retry=FAST_RETRY,
    init=_record("init"),
    on_start=_record("on_start"),
    on_start_attempt=_record("on_start_attempt"),
    cleanup=_record("cleanup"),
    on_success=_record("on_success"),
    on_complete=_record("on_complete"),
)
def all_hooks(payload, ctx):
    events.record(f"all-hooks:{ctx.run.id}", ["run", ctx.attempt.number, ctx.init])
    if ctx.attempt.number == 1:
        raise RuntimeError("first attempt fails")
    return {"init_seen": ctx.init}


def _failing_start_attempt(ctx):
    if ctx.attempt.number == 1:
        raise RuntimeError("on_start_attempt failed")


@task(id="start-attempt-fails", retry=FAST_RETRY, on_start_attempt=_failing_start_attempt)
def start_attempt_fails(payload, ctx):
    return ctx.attempt.number


def _fails_on_attempt_1_in(name):
    def hook(ctx, payload):
        if payload["fail_in"] == name and ctx.attempt.number == 1:
            raise RuntimeError(f"{name} failed")

    return hook


def _records_cleanup(ctx, init):
    events.record(f"cleanup:{ctx.run.id}", [ctx.attempt.number, init])


@task(
    id="a-start-hook-fails",
    retry=FAST_RETRY,
    init=_fails_on_attempt_1_in("init"),
    on_start=_fails_on_attempt_1_in("on_start"),
    on_start_attempt=_fails_on_attempt_1_in("on_start_attempt"),
    cleanup=_records_cleanup,
)
def a_start_hook_fails(payload, ctx):
    return ctx.attempt.number


# -- queues and limits (SPEC 4) ---------------------------------------------------------

LIMIT_2 = queue(name="limit-2", concurrency_limit=2)
SHARED_1 = queue(name="shared-1", concurrency_limit=1)
PER_KEY_1 = queue(name="per-key-1", concurrency_limit=1)
PRIO_1 = queue(name="prio-1", concurrency_limit=1)
CHAOS_3 = queue(name="chaos-3", concurrency_limit=3)


def _interval(payload, ctx):
    """Record the start and end of this attempt as seen by the run itself."""
    tag = payload.get("tag", "interval")
    start = time.time()
    events.record(f"start:{tag}", [ctx.run.id, ctx.run.concurrency_key, start, os.getpid()])
    time.sleep(payload.get("seconds", 0.3))
    events.record(f"interval:{tag}", [ctx.run.id, ctx.run.concurrency_key, start, time.time()])
    return ctx.attempt.number


task(id="limited-2", run=_interval, queue=LIMIT_2)
task(id="shared-a", run=_interval, queue=SHARED_1)
task(id="shared-b", run=_interval, queue=SHARED_1)
task(id="per-key", run=_interval, queue=PER_KEY_1)
# SPEC 4's name for the per-key limit, with a cap on all keys together.
task(
    id="tenant-work",
    run=_interval,
    queue=queue(name="tenants-total-2", concurrency_key_limit=1, total_limit=2),
)
task(id="prio", run=_interval, queue=PRIO_1)
task(id="env-a", run=_interval)
task(id="env-b", run=_interval)
task(id="env-c", run=_interval)
task(id="chaos", run=_interval, queue=CHAOS_3, retry={"max_attempts": 10, "min_timeout_in_ms": 50})


def _kill_myself(payload, ctx):
    events.record(f"attempts:{ctx.run.id}", ctx.attempt.number)
    if ctx.attempt.number in payload.get("die_on", [1]):
        os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does
    return {"survived_attempt": ctx.attempt.number}


task(
    id="dies",
    run=_kill_myself,
    queue=queue(name="dies-1", concurrency_limit=1),
    retry={"max_attempts": 2, "min_timeout_in_ms": 50},
)
task(id="after-death", run=_interval, queue="dies-1")


@task(id="exits", retry={"max_attempts": 2, "min_timeout_in_ms": 50})
def exits(payload, ctx):
    events.record(f"attempts:{ctx.run.id}", ctx.attempt.number)
    if ctx.attempt.number == 1:
        sys.exit(3)
    return {"pid": os.getpid()}


# -- options and run actions (SPEC 5, 6) -------------------------------------------------


def _on_cancel(payload, ctx, signal, run_finished):
    events.record(f"on_cancel:{ctx.run.id}", signal.is_set())
    logger.info("on_cancel says", stage="cancel")  # stored with its run, as in any hook
    events.record(f"on_cancel_payload:{ctx.run.id}", payload)
    run_finished.wait(10)  # on_cancel may wait for the run function to finish
    events.record(f"on_cancel_done:{ctx.run.id}", True)


def _ended_how(name):
    def hook(ctx):
        events.record(f"ended:{ctx.run.id}", name)

    return hook


@task(
    id="cooperative",
    on_cancel=_on_cancel,
    on_success=_ended_how("on_success"),
    on_complete=_ended_how("on_complete"),
    on_failure=_ended_how("on_failure"),
)
def cooperative(payload, ctx):
    events.record(f"started:{ctx.run.id}", ctx.attempt.number)
    for _ in range(600):
        if ctx.signal.wait(0.05):
            events.record(f"saw_signal:{ctx.run.id}", ctx.signal.reason)
            return "stopped early"
    return "ran to the end"


def _slow_failure_hook(ctx, error=None):
    time.sleep(7)  # longer than the monitor's hard grace after a stop
    events.record(f"failure-hook-done:{ctx.run.id}", ctx.attempt.number)


@task(id="stopped-then-slow-hook", retry={"max_attempts": 1}, on_failure=_slow_failure_hook)
def stopped_then_slow_hook(payload, ctx):
    events.record(f"started:{ctx.run.id}", ctx.attempt.number)
    deadline = time.time() + payload.get("seconds", 60)
    while time.time() < deadline:
        time.sleep(0.05)  # ignores ctx.signal, gives way to the monitor's stop
    return "finished"


def _failing_cleanup(ctx):
    raise RuntimeError("cleanup failed on the way out")


@task(id="stubborn-failing-cleanup", retry={"max_attempts": 3}, cleanup=_failing_cleanup)
def stubborn_failing_cleanup(payload, ctx):
    deadline = time.time() + payload.get("seconds", 30)
    while time.time() < deadline:
        time.sleep(0.05)  # ignores ctx.signal on purpose
    return "finished"


@task(id="ignores-its-stop", retry={"max_attempts": 1})
def ignores_its_stop(payload, ctx):
    """Sleeps ``seconds`` in all, swallowing the monitor's stop on the way (the monitor
    raises it once): only the end of its pool process ends it."""
    deadline = time.time() + payload.get("seconds", 60)
    while time.time() < deadline:
        try:
            time.sleep(max(0.0, deadline - time.time()))
        except BaseException as stop:  # swallowed on purpose
            events.record(f"stopped:{ctx.run.id}", type(stop).__name__)
    return "slept"


@task(id="stubborn", retry={"max_attempts": 3})
def stubborn(payload, ctx):
    events.record(f"started:{ctx.run.id}", ctx.attempt.number)
    deadline = time.time() + payload.get("seconds", 30)
    while time.time() < deadline:
        time.sleep(0.05)  # ignores ctx.signal on purpose
    events.record(f"finished:{ctx.run.id}", ctx.attempt.number)
    return "finished"


BLOCKED_1 = queue(name="blocked-1", concurrency_limit=1)


def _blocked_ended(ctx):
    events.record(f"blocked-ended:{ctx.run.id}", ctx.attempt.number)


@task(id="blocked-in-one-call", queue=BLOCKED_1, on_failure=_blocked_ended)
def blocked_in_one_call(payload, ctx):
    """Waits in one C call (a socket read) until the test writes a byte: nothing raised
    in its thread can stop it before that, and only a prefork child can be ended."""
    with socket.create_connection(("127.0.0.1", payload["port"]), timeout=300) as conn:
        events.record(f"blocked:{ctx.run.id}", ctx.attempt.number)
        conn.recv(1)
    events.record(f"unblocked:{ctx.run.id}", ctx.attempt.number)
    return "unblocked"


task(id="after-blocked", run=lambda payload, ctx: "ran", queue=BLOCKED_1)


DEAF_1 = queue(name="deaf-1", concurrency_limit=1)


@task(id="deaf-to-cancel", queue=DEAF_1, retry={"max_attempts": 1})
def deaf_to_cancel(payload, ctx):
    """Ignores its stop until its process is ended: swallows the monitor's exception,
    tries to trigger a child after it (refused: its signal says canceled; the refusal is
    swallowed too) and runs on; with ``kill_worker`` it SIGKILLs its whole worker (as an
    OOM killer might), with ``port`` it waits in one socket read until the test writes a
    byte, then returns."""
    try:
        events.record(f"started:{ctx.run.id}", ctx.attempt.number)
        while True:
            time.sleep(0.05)
    except BaseException as stop:  # the monitor's stop, swallowed on purpose
        events.record(f"stopped:{ctx.run.id}", type(stop).__name__)
    # Nothing else is raised in this thread: the monitor interrupts an attempt once.
    try:
        late = echo.trigger({"late": True}, delay="1h")
    except RunCanceledError as refused:
        events.record(f"refused:{ctx.run.id}", str(refused))
    else:
        events.record(f"late-child:{ctx.run.id}", late.id)
    if payload.get("kill_worker"):  # the whole worker dies before its monitor ends this
        os.killpg(os.getpgrp(), signal.SIGKILL)
    if "port" in payload:  # one C call until the test writes: outside prefork, it returns
        with socket.create_connection(("127.0.0.1", payload["port"]), timeout=300) as conn:
            conn.recv(1)
        events.record(f"returned:{ctx.run.id}", ctx.attempt.number)
        return "returned"
    while True:
        time.sleep(0.05)


task(id="after-deaf", run=lambda payload, ctx: "ran", queue=DEAF_1)


@task(id="triggers-after-its-stop", retry={"max_attempts": 3})
def triggers_after_its_stop(payload, ctx):
    """Swallows its stop, then triggers a child in the ``form`` the payload names and
    lets whatever that raises end it. Returns if the trigger went through."""
    from trigger_celery import tasks as api

    try:
        events.record(f"started:{ctx.run.id}", ctx.attempt.number)
        while True:
            time.sleep(0.05)
    except RunCanceledError as stop:
        events.record(f"stopped:{ctx.run.id}", type(stop).__name__)
    form = payload["form"]
    events.record(f"triggering:{ctx.run.id}", form)
    if form == "trigger":
        echo.trigger({"late": True}, delay="1h")
    elif form == "tasks.trigger":
        api.trigger("echo", {"late": True})
    elif form == "batch_trigger":
        echo.batch_trigger([{"payload": {"late": 1}}, {"payload": {"late": 2}}])
    elif form == "trigger_and_wait":
        echo.trigger_and_wait({"late": True})
    elif form == "batch_trigger_and_wait":
        echo.batch_trigger_and_wait([{"payload": {"late": 1}}])
    events.record(f"triggered:{ctx.run.id}", form)
    return "triggered"


@task(id="times-out-then-triggers", max_duration=5, retry={"max_attempts": 1})
def times_out_then_triggers(payload, ctx):
    """Swallows its max_duration stop, waits until the test has canceled it, triggers a
    child (not refused: its signal says max_duration) and lets the stop end it."""
    try:
        events.record(f"started:{ctx.run.id}", ctx.attempt.number)
        while True:
            time.sleep(0.05)
    except MaxDurationExceededError as stop:
        events.record(f"stopped:{ctx.run.id}", type(stop).__name__)
        for _ in range(60):  # the test cancels the run meanwhile
            if events.values(f"go:{ctx.run.id}"):
                break
            time.sleep(0.05)
        events.record(f"late-child:{ctx.run.id}", echo.trigger({"late": True}, delay="1h").id)
        raise


@task(id="quiet")
def quiet(payload, ctx):
    """Touches nothing but its run: for tests that take Redis away from the workers."""
    return payload


@task(id="echo")
def echo(payload, ctx):
    events.record(f"echo:{ctx.run.id}", ctx.attempt.number)
    return {"payload": payload, "tags": ctx.run.tags}


@task(id="batches-big-echoes", retry={"max_attempts": 1})
def batches_big_echoes(payload, ctx):
    """Waits on echoes of blobs of the sizes given; their sizes as the children said."""
    items = [{"payload": {"blob": "x" * size}} for size in payload["sizes"]]
    return [len(r.unwrap()["payload"]["blob"]) for r in echo.batch_trigger_and_wait(items).runs]


@task(id="waits-by-id", retry={"max_attempts": 1})
def waits_by_id(payload, ctx):
    """Waits on children named by task id, as Trigger.dev's tasks.triggerAndWait."""
    from trigger_celery import tasks

    one = tasks.trigger_and_wait("echo", {"n": 1}).unwrap()
    many = tasks.batch_trigger_and_wait("echo", [{"payload": {"n": 2}}, {"payload": {"n": 3}}])
    return [one["payload"], *(r.unwrap()["payload"] for r in many.runs)]


@task(id="progress")
def progress(payload, ctx):
    from trigger_celery import tags as run_tags

    metadata.set("progress", 0.5)
    metadata.append("steps", "half")
    metadata.increment("count", 2)
    run_tags.add("halfway")
    deadline = time.time() + 20
    while not events.values(f"go:{ctx.run.id}") and time.time() < deadline:
        time.sleep(0.05)
    metadata.set("progress", 1.0)
    metadata.remove("count")
    return "done"


@task(id="gated")
def gated(payload, ctx):
    """Waits for the test's go, then changes its metadata and completes."""
    deadline = time.time() + 20
    while not events.values(f"go:{ctx.run.id}") and time.time() < deadline:
        time.sleep(0.05)
    metadata.set("after-go", True)
    return "done"


def _on_success_until_go(ctx, output):
    events.record(f"on_success:{ctx.run.id}", "started")
    deadline = time.time() + 20
    while not events.values(f"go:{ctx.run.id}") and time.time() < deadline:
        time.sleep(0.05)
    events.record(f"on_success:{ctx.run.id}", "done")


def _record_cancel(ctx, run_finished, signal):
    events.record(f"on_cancel:{ctx.run.id}", [run_finished.is_set(), signal.reason])


@task(id="success-hook-until-go", on_success=_on_success_until_go, on_cancel=_record_cancel)
def success_hook_until_go(payload, ctx):
    return "charged"


@task(id="parent-once", retry={"max_attempts": 2, "min_timeout_in_ms": 50})
def parent_once(payload, ctx):
    from trigger_celery import idempotency_keys
    from trigger_celery import tasks as api

    child = api.trigger(
        "echo", {"from": ctx.run.id}, idempotency_key=idempotency_keys.create("child")
    )
    events.record(f"children:{ctx.run.id}", child.id)
    if ctx.attempt.number == 1:
        raise RuntimeError("fail after triggering the child")
    return child.id


@task(id="fails-once", retry={"max_attempts": 1})
def fails_once(payload, ctx):
    events.record(f"fails-once:{payload['tag']}", ctx.run.id)
    if len(events.values(f"fails-once:{payload['tag']}")) == 1:
        raise RuntimeError("the first one fails")
    return "ok"


@task(id="retries-past-a-failed-child", retry={"max_attempts": 2, "min_timeout_in_ms": 50})
def retries_past_a_failed_child(payload, ctx):
    first = echo.trigger_and_wait({"n": 1})  # succeeds: replayed, never run again
    events.record(f"first-child:{ctx.run.id}", first.id)
    return fails_once.trigger_and_wait({"tag": ctx.run.id}).unwrap()


@task(id="spawner")
def spawner(payload, ctx):
    from trigger_celery import tasks as api

    child = api.trigger("echo", {"child": True}, delay="1h")
    events.record(f"child:{ctx.run.id}", child.id)
    ctx.signal.wait(payload.get("hold", 30))
    return "stopped"


@task(id="big-output", retry={"max_attempts": 1})
def big_output(payload, ctx):
    return {"blob": "y" * payload["size"]}


# -- waits (SPEC 7) -------------------------------------------------------------------------

WAIT_1 = queue(name="wait-1", concurrency_limit=1)


@task(id="wait-parent")
def wait_parent(payload, ctx):
    events.record(f"before:{ctx.run.id}", ctx.attempt.number)
    result = echo.trigger_and_wait({"from": "parent", **payload})
    events.record(f"after:{ctx.run.id}", result.ok)
    return {"ok": result.ok, "child": result.output, "child_id": result.id}


@task(id="limited-child", queue=WAIT_1)
def limited_child(payload, ctx):
    return payload["n"] * 2


@task(id="limited-parent", queue=WAIT_1)
def limited_parent(payload, ctx):
    return limited_child.trigger_and_wait({"n": payload["n"]}).unwrap() + 1


@task(id="batch-parent")
def batch_parent(payload, ctx):
    options = {"options": payload["options"]} if "options" in payload else {}
    results = echo.batch_trigger_and_wait(
        [{"payload": {"i": i}, **options} for i in range(payload["n"])]
    )
    assert len(results) == payload["n"]
    return [r.output["payload"]["i"] for r in results]  # a BatchResult iterates its runs


@task(id="unwrap-parent")
def unwrap_parent(payload, ctx):
    from trigger_celery.errors import SubtaskUnwrapError

    result = always_fails.trigger_and_wait({}, max_attempts=1)
    try:
        result.unwrap()
    except SubtaskUnwrapError as err:
        return {
            "ok": result.ok,
            "run_id": err.run_id,
            "task_id": err.task_id,
            "error": result.error["type"],
            "message": str(err),
        }
    return "unwrapped?"


@task(id="sleeper")
def sleeper(payload, ctx):
    from trigger_celery import wait

    events.record(f"sleep-start:{ctx.run.id}", time.time())
    wait.for_(seconds=payload["seconds"])
    return "woke"


@task(id="resumes-then-hangs", retry={"max_attempts": 2, "min_timeout_in_ms": 50})
def resumes_then_hangs(payload, ctx):
    """Attempt 1 suspends in a wait, resumes, notes its pid and hangs for the test to kill
    it; attempt 2 returns at once."""
    from trigger_celery import wait

    if ctx.attempt.number > 1:
        return "survived"
    wait.for_(seconds=payload["seconds"])
    events.record(f"resumed-pid:{ctx.run.id}", [ctx.attempt.number, os.getpid()])
    for _ in range(1200):  # 60 s at most, if the test never kills it
        time.sleep(0.05)
    return "not killed"


@task(id="waits-on-long-child")
def waits_on_long_child(payload, ctx):
    result = cooperative.trigger_and_wait({})
    events.record(f"after:{ctx.run.id}", True)
    return result.ok


@task(id="level")
def level(payload, ctx):
    if payload["n"] == 0:
        return 0
    return level.trigger_and_wait({"n": payload["n"] - 1}).unwrap() + 1


def _on_wait(ctx, payload, wait, signal, init):
    events.record(f"wait-hooks:{ctx.run.id}", "on_wait")
    events.record(f"wait-args:{ctx.run.id}", [payload, wait["type"], wait["step"]])


def _on_resume(ctx, payload, wait):
    events.record(f"wait-hooks:{ctx.run.id}", "on_resume")
    events.record(f"wait-args:{ctx.run.id}", [payload, wait["type"], wait["step"]])


@task(id="hooked-sleeper", on_wait=_on_wait, on_resume=_on_resume)
def hooked_sleeper(payload, ctx):
    from trigger_celery import wait

    wait.for_(seconds=3)
    return "ok"


@task(id="replayer")
def replayer(payload, ctx):
    events.record(f"before:{ctx.run.id}", ctx.attempt.number)
    result = sleeper.trigger_and_wait({"seconds": 3})  # long enough to suspend the parent
    events.record(f"after:{ctx.run.id}", result.output)
    return result.output


@task(id="idem-parent")
def idem_parent(payload, ctx):
    from trigger_celery import idempotency_keys

    key = idempotency_keys.create(payload["key"], scope="global")
    result = echo.trigger_and_wait({"new": True}, idempotency_key=key)
    return {"child": result.id, "output": result.output}


@task(id="marks-done", retry={"max_attempts": 1})
def marks_done(payload, ctx):
    """Takes its item off the list the parent loops over, as a child that marks a row
    processed takes it out of the parent's queryset."""
    events.client().lrem(f"tc-test:pending:{payload['list']}", 0, payload["item"])
    return payload["item"] * 10


def _pending(name):
    return [int(item) for item in events.client().lrange(f"tc-test:pending:{name}", 0, -1)]


@task(id="loops-over-pending", retry={"max_attempts": 1})
def loops_over_pending(payload, ctx):
    """The Django habit ``for order in Order.objects.filter(done=False)``, one wait each."""
    done = []
    for item in _pending(payload["list"]):
        result = marks_done.trigger_and_wait({"list": payload["list"], "item": item})
        done.append([item, result.unwrap()])
    return done


@task(id="waits-with-tuples", retry={"max_attempts": 1})
def waits_with_tuples(payload, ctx):
    """A payload that JSON changes (a tuple, a set, an int key) is the same on replay."""
    result = echo.trigger_and_wait({"pair": (1, 2), 3: {"s": {5, 4}}})
    return result.unwrap()["payload"]


@task(id="stamps-its-child", retry={"max_attempts": 1})
def stamps_its_child(payload, ctx):
    """A payload made anew on each execution, with a key of the user's naming the child."""
    from trigger_celery import idempotency_keys

    options = {"idempotency_key": idempotency_keys.create("stamped")} if payload["keyed"] else {}
    result = echo.trigger_and_wait({"at": time.time_ns()}, **options)
    return result.unwrap()["payload"]["at"]


@task(id="stamps-three-children", retry={"max_attempts": 1})
def stamps_three_children(payload, ctx):
    """Three steps whose payloads differ on every replay: each is warned of once."""
    return [echo.trigger_and_wait({"at": time.time_ns(), "i": i}).ok for i in range(3)]


@task(id="catches-a-wait-then-waits-again", retry={"max_attempts": 1})
def catches_a_wait_then_waits_again(payload, ctx):
    """A bare except around a wait, then another wait that depends on the first."""
    try:
        first = echo.trigger_and_wait({"n": 1}).unwrap()["payload"]["n"]
    except:  # noqa: E722 - the habit under test
        first = 0
    return echo.trigger_and_wait({"after": first}).unwrap()["payload"]


@task(id="waits-in-a-task-group", retry={"max_attempts": 1})
async def waits_in_a_task_group(payload, ctx):
    """A wait inside an asyncio.TaskGroup: its suspension leaves the group wrapped in a
    BaseExceptionGroup."""

    async def child():
        return echo.trigger_and_wait({"in": "group"}).unwrap()["payload"]

    async with asyncio.TaskGroup() as group:
        task = group.create_task(child())
    return task.result()


@task(id="batches-the-pending", retry={"max_attempts": 1})
def batches_the_pending(payload, ctx):
    return _batch_the_pending(payload)


def _batch_the_pending(payload):
    items = _pending(payload["list"])
    results = marks_done.batch_trigger_and_wait(
        [{"payload": {"list": payload["list"], "item": item}} for item in items]
    )
    return [[item, result.output] for item, result in zip(items, results.runs, strict=False)]


@task(id="wraps-the-pending-batch", retry=FAST_RETRY)
async def wraps_the_pending_batch(payload, ctx):
    """``batches-the-pending`` with retries left, its replay's ReplayMismatchError raised
    wrapped: by ``raise ... from``, or in an asyncio.TaskGroup's ExceptionGroup."""

    async def batch():
        return _batch_the_pending(payload)

    if payload["wrap"] == "group":
        async with asyncio.TaskGroup() as group:
            done = group.create_task(batch())
        return done.result()
    try:
        return await batch()
    except Exception as err:
        raise RuntimeError("could not settle the pending items") from err


@task(id="swallows-the-pending-batch", retry={"max_attempts": 1})
def swallows_the_pending_batch(payload, ctx):
    """``batches-the-pending``, its replay's ReplayMismatchError caught, then a later
    wait: is it refused, or given a step of another path?"""
    try:
        first = _batch_the_pending(payload)
    except ReplayMismatchError:
        first = "mismatch"
    try:
        echo.trigger_and_wait({"after": "the mismatch"})
        later = "ran"
    except ReplayMismatchError:
        later = "refused"
    events.record(f"swallowed:{payload['list']}", [first, later])
    return [first, later]


@task(id="tens-its-item", retry={"max_attempts": 1})
def tens_its_item(payload, ctx):
    """Replaces its item in the list its parent batches over by ten times it."""
    events.client().lset(
        f"tc-test:pending:{payload['list']}", payload["index"], payload["item"] * 10
    )
    return payload["item"] * 10


@task(id="batches-the-numbered", retry={"max_attempts": 1})
def batches_the_numbered(payload, ctx):
    """A batch over rows its children change, as many after as before, then one more wait:
    each replay passes the batch step with other payloads."""
    items = _pending(payload["list"])
    results = tens_its_item.batch_trigger_and_wait(
        [{"payload": {"list": payload["list"], "index": i, "item": n}} for i, n in enumerate(items)]
    )
    echo.trigger_and_wait({"after": "batch"})
    return [result.output for result in results.runs]


from tests.taskapp import scheduled  # noqa: E402,F401  (schedules.task definitions)


def _payload_hook(name):
    def hook(ctx, payload):
        events.record(f"payload-hooks:{ctx.run.id}", [name, payload])

    return hook


@task(
    id="payload-hooks",
    on_success=_payload_hook("on_success"),
    on_complete=_payload_hook("on_complete"),
    on_failure=_payload_hook("on_failure"),
)
def payload_hooks(payload, ctx):
    if payload.get("fail"):
        raise AbortTaskRunError("asked to fail")
    return "done"


def _complete_names_both(ctx, output, error):
    # on_complete names output and error: it gets both, None for the one that is not.
    events.record(f"complete-both:{ctx.run.id}", [output, None if error is None else str(error)])


@task(id="complete-names-both", on_complete=_complete_names_both)
def complete_names_both(payload, ctx):
    if payload.get("fail"):
        raise AbortTaskRunError("asked to fail")
    return "done"


def _broken_on_resume(ctx):
    events.record(f"broken-resume:{ctx.run.id}", ctx.attempt.number)
    raise RuntimeError("on_resume is broken")


@task(id="broken-on-resume", on_resume=_broken_on_resume)
def broken_on_resume(payload, ctx):
    from trigger_celery import wait

    wait.for_(seconds=3)
    return "resumed anyway"


# -- tasks of the chaos tests (tests/chaos) ---------------------------------------------------


@task(id="slow-echo")
def slow_echo(payload, ctx):
    time.sleep(payload.get("sleep", 1.0))
    return {"n": payload["n"]}


@task(id="waits-on-child")
def waits_on_child(payload, ctx):
    return {"child": slow_echo.trigger_and_wait({"n": payload["n"]}).unwrap()}


@task(id="waits-on-batch", retry={"max_attempts": 3, "min_timeout_in_ms": 100})
def waits_on_batch(payload, ctx):
    items = [{"payload": {"n": i, "sleep": 0.2}} for i in range(payload["count"])]
    results = slow_echo.batch_trigger_and_wait(items)
    return [r.unwrap()["n"] for r in results.runs]


@task(id="waits-a-while")
def waits_a_while(payload, ctx):
    from trigger_celery import wait

    wait.for_(seconds=3)
    return "waited"


def _slow_on_success(ctx):
    events.record(f"slow-success:{ctx.run.id}", ctx.attempt.number)
    time.sleep(float(os.environ.get("TC_SLOW_HOOK_SECONDS", "6")))  # the lease is 4 s


@task(id="slow-on-success", retry={"max_attempts": 1}, on_success=_slow_on_success)
def slow_on_success(payload, ctx):
    return {"big": "x" * 1000}


@task(id="pid-sleeper", retry={"max_attempts": 3, "min_timeout_in_ms": 100})
def pid_sleeper(payload, ctx):
    events.record(f"pid-sleeper:{ctx.run.id}", [ctx.attempt.number, os.getpid()])
    for _ in range(int(payload["seconds"] / 0.05)):  # work, not wall time: a frozen
        time.sleep(0.05)  # process has the same work left when it wakes
    events.record(f"pid-sleeper-done:{ctx.run.id}", ctx.attempt.number)
    return {"attempt": ctx.attempt.number}


def _success_of_attempt(ctx):
    events.record(f"wakes-done-success:{ctx.run.id}", ctx.attempt.number)


@task(
    id="wakes-done",
    retry={"max_attempts": 3, "min_timeout_in_ms": 100},
    on_success=_success_of_attempt,
)
def wakes_done(payload, ctx):
    events.record(f"wakes-done:{ctx.run.id}", [ctx.attempt.number, os.getpid()])
    time.sleep(payload["seconds"])  # one sleep: over at once when a long freeze ends
    return {"attempt": ctx.attempt.number}


@task(id="sqlite-parent", retry={"max_attempts": 3, "min_timeout_in_ms": 100})
def sqlite_parent(payload, ctx):
    from trigger_celery import wait

    results = slow_echo.batch_trigger_and_wait(
        [{"payload": {"n": i, "sleep": 0.05}} for i in range(6)]
    )
    wait.for_(seconds=0.5)
    return [r.unwrap()["n"] for r in results.runs]


task(
    id="poison",
    run=_kill_myself,
    queue=queue(name="poison-q", concurrency_limit=1),
    retry={"max_attempts": 3, "min_timeout_in_ms": 50},
)


@task(id="steady", queue=queue(name="steady-q", concurrency_limit=2))
def steady(payload, ctx):
    events.record(f"steady-start:{ctx.run.id}", ctx.attempt.number)
    time.sleep(payload.get("seconds", 0.05))
    return {"n": payload.get("n")}


# -- a rate limit on starts ----------------------------------------------------------------

RATED = queue(name="rated-4s", rate_limit="4/s")
task(id="rated", run=lambda payload, ctx: None, queue=RATED)


# -- the dashboard's queue limit override -----------------------------------------------

OVERRIDE_1 = queue(name="override-1", concurrency_limit=1)
task(id="override-me", run=_interval, queue=OVERRIDE_1)


@task(id="trace-parent")
def trace_parent(payload, ctx):
    from trigger_celery import tasks as api

    return api.trigger("echo", {"from": ctx.run.id}).id


@task(id="logs-plainly")
def logs_plainly(payload, ctx):
    import logging

    logging.getLogger("tests.plain").warning("a plain log line", extra={"run_id": "mine"})
    return "logged"


@task(id="logs-in-steps")
def logs_in_steps(payload, ctx):
    """Logs each of ``payload["lines"]``, then waits for the test's next go before the
    following one (so a page can be watched while the run executes)."""
    for n, line in enumerate(payload["lines"], start=1):
        logger.info(line, step=n)
        deadline = time.time() + 20
        while len(events.values(f"go:{ctx.run.id}")) < n and time.time() < deadline:
            time.sleep(0.05)
    return "logged"


@task(id="keyed-batch-parent")
def keyed_batch_parent(payload, ctx):
    """A ``batch_trigger_and_wait`` whose items carry idempotency keys of the caller's."""
    from trigger_celery import idempotency_keys

    scope = payload.get("scope", "run")
    child = sleepy if "sleep" in payload else echo
    extra = {"seconds": payload["sleep"]} if "sleep" in payload else {}
    items = [
        {
            "payload": {"i": i, **extra},
            "options": {"idempotency_key": idempotency_keys.create(k, scope=scope)},
        }
        for i, k in enumerate(payload["keys"])
    ]
    results = child.batch_trigger_and_wait(items)
    return [[r.ok, r.id, r.output] for r in results.runs]


def _waits_in_hook(ctx, **kwargs):
    from trigger_celery import wait

    try:
        wait.for_(seconds=30)
    except Exception as err:
        events.record(f"hook-wait:{ctx.run.id}", f"{type(err).__name__}: {err}")
        raise


@task(id="waits-in-on-success", on_success=_waits_in_hook)
def waits_in_on_success(payload, ctx):
    events.record(f"ran:{ctx.run.id}", ctx.attempt.number)
    return "done"


@task(id="waits-in-on-start", retry={"max_attempts": 1}, on_start=_waits_in_hook)
def waits_in_on_start(payload, ctx):
    return "done"


def _runs_on_until_a_late_child(ctx):
    """Swallow the stop, then run on until the test has written a child of this run (as a
    trigger that committed before the run's signal was set leaves one)."""
    from trigger_celery.models import Run

    try:
        while True:
            time.sleep(0.05)
    except RunCanceledError:
        pass
    while not Run.objects.filter(parent_id=ctx.run.id).exists():
        time.sleep(0.05)


def _waits_in_start_attempt(ctx):
    from trigger_celery import wait

    wait.for_(seconds=3)


@task(
    id="waits-in-on-start-attempt",
    retry={"max_attempts": 1},
    on_start_attempt=_waits_in_start_attempt,
)
def waits_in_on_start_attempt(payload, ctx):
    from trigger_celery import wait

    started = time.time()
    wait.for_(seconds=3)
    return {"waited": time.time() - started >= 3 or "resumed"}


@task(id="swallows-its-wait", retry={"max_attempts": 1})
def swallows_its_wait(payload, ctx):
    try:
        result = sleeper.trigger_and_wait({"seconds": 3})
    except:  # noqa: E722 - the habit under test: a bare except around a wait
        events.record(f"swallowed:{ctx.run.id}", ctx.attempt.number)
        if payload.get("raise"):
            raise RuntimeError("the wait failed?") from None
        return "swallowed"
    return result.output


@task(id="short-waits-past-max-duration", max_duration=5, retry={"max_attempts": 1})
def short_waits_past_max_duration(payload, ctx):
    """Four short waits, each spent in place: 8 s of waiting, not compute."""
    from trigger_celery import wait

    for _ in range(4):
        wait.for_(seconds=2)
    return "done"


@task(id="triggers-and-fails-after-its-cancel", retry=FAST_RETRY)
def triggers_and_fails_after_its_cancel(payload, ctx):
    """Canceled, it runs on, tries to trigger a child (refused) and raises: an error with
    retries left."""
    events.record(f"started:{ctx.run.id}", ctx.attempt.number)
    _runs_on_until_a_late_child(ctx)
    try:
        cooperative.trigger({})
    except RunCanceledError as refused:
        events.record(f"refused:{ctx.run.id}", type(refused).__name__)
    raise RuntimeError("stopped")


@task(id="triggers-after-its-cancel", retry={"max_attempts": 1})
def triggers_after_its_cancel(payload, ctx):
    """Canceled, it runs on and waits on a child: the refusal of its trigger ends it."""
    events.record(f"started:{ctx.run.id}", ctx.attempt.number)
    _runs_on_until_a_late_child(ctx)
    return cooperative.trigger_and_wait({}).ok


@task(id="waits-until", retry={"max_attempts": 1})
def waits_until(payload, ctx):
    """``wait.until`` the ISO datetime of the payload (naive if it is written so)."""
    from datetime import datetime

    from trigger_celery import wait

    wait.until(datetime.fromisoformat(payload["until"]))
    return "woke"


class _UnprintableError(Exception):
    """An error whose ``str()`` itself fails, as a careless ``__str__`` does."""

    def __str__(self):
        raise AttributeError("'NoneType' object has no attribute 'status'")


def _record_failure_type(ctx, error):
    events.record(f"on_failure:{ctx.run.id}", type(error).__name__)


@task(id="raises-unprintable", retry=FAST_RETRY, on_failure=_record_failure_type)
def raises_unprintable(payload, ctx):
    events.record(f"attempts:{ctx.run.id}", ctx.attempt.number)
    raise _UnprintableError()


class LibraryBaseError(BaseException):
    """A library's own BaseException (not an Exception), as some define."""


@task(id="raises-a-base-exception", retry=FAST_RETRY, on_failure=_record_failure_type)
def raises_a_base_exception(payload, ctx):
    events.record(f"attempts:{ctx.run.id}", ctx.attempt.number)
    if payload.get("grouped"):
        raise BaseExceptionGroup("grouped", [LibraryBaseError("in a group")])
    raise LibraryBaseError("a library's BaseException")


@task(id="async-raises-cancelled", retry=FAST_RETRY, on_failure=_record_failure_type)
async def async_raises_cancelled(payload, ctx):
    """An inner asyncio task the run's own code cancelled and then awaited."""
    events.record(f"attempts:{ctx.run.id}", ctx.attempt.number)
    inner = asyncio.ensure_future(asyncio.sleep(30))
    await asyncio.sleep(0)
    inner.cancel()
    await inner


async def _on_success_cancelled(ctx):
    inner = asyncio.ensure_future(asyncio.sleep(30))
    await asyncio.sleep(0)
    inner.cancel()
    await inner


async def _catch_error_cancelled(ctx):
    events.record(f"catch_error:{ctx.run.id}", ctx.attempt.number)
    await _on_success_cancelled(ctx)


@task(
    id="hook-raises-cancelled",
    retry=FAST_RETRY,
    on_success=_on_success_cancelled,
    catch_error=_catch_error_cancelled,
)
def hook_raises_cancelled(payload, ctx):
    if payload.get("fail"):
        raise RuntimeError("fails, and its catch_error hook is cancelled")
    return "done"


@task(id="retries-a-block-until-canceled", retry={"max_attempts": 1})
def retries_a_block_until_canceled(payload, ctx):
    """A block retried by ``retry.on_throw`` that is in a long call when the run is
    canceled: the cancel's stop must not be taken for the block's own failure."""
    from trigger_celery import retry

    def call():
        events.record(f"tries:{ctx.run.id}", 1)
        for _ in range(600):  # a long call, made of short blocking ones
            time.sleep(0.1)

    try:
        retry.on_throw(call, max_attempts=5, min_timeout_in_ms=50, randomize=False)
    finally:
        events.record(f"left:{ctx.run.id}", 1)


@task(id="raises-a-huge-error", retry={"max_attempts": 2, "min_timeout_in_ms": 50})
def raises_a_huge_error(payload, ctx):
    """An error quoting a whole (large) response body, as careless code does."""
    body = "<html>" + "b" * payload["size"] + "</html>"
    raise ValueError(f"the service answered {body}")


def _lifecycle(name):
    def hook(ctx):
        events.record(f"lifecycle:{ctx.run.id}", [name, ctx.attempt.number])

    return hook


@task(
    id="fails-in-a-block-until-canceled",
    retry={"max_attempts": 1},
    on_failure=_lifecycle("on_failure"),
    on_complete=_lifecycle("on_complete"),
    catch_error=_lifecycle("catch_error"),
)
def fails_in_a_block_until_canceled(payload, ctx):
    """A block retried by ``retry.on_throw`` whose every try fails, canceled while it
    pauses before its next try: the pause ends with the cancel, and the run is canceled,
    not failed with the block's own error."""
    from trigger_celery import retry

    def call():
        events.record(f"tries:{ctx.run.id}", 1)
        raise ConnectionError("the service is down")

    retry.on_throw(call, max_attempts=5, min_timeout_in_ms=60_000, randomize=False)


def _compensates(ctx, run_finished):
    """An on_cancel hook that triggers a compensating run once the run function ended,
    and tries a wait (refused: nothing could resume it)."""
    run_finished.wait(20)
    events.record(f"compensation:{ctx.run.id}", echo.trigger({"undo": ctx.run.id}).id)
    try:
        echo.trigger_and_wait({"undo": ctx.run.id})
    except Exception as refused:
        events.record(f"wait-refused:{ctx.run.id}", f"{type(refused).__name__}: {refused}")


@task(id="compensates-on-cancel", retry={"max_attempts": 1}, on_cancel=_compensates)
def compensates_on_cancel(payload, ctx):
    events.record(f"started:{ctx.run.id}", ctx.attempt.number)
    while not ctx.signal.wait(0.05):
        pass


def _records_whether_the_run_finished(ctx, run_finished):
    events.record(f"finished-in-grace:{ctx.run.id}", run_finished.wait(20))


@task(
    id="async-fails-in-a-block-until-canceled",
    retry={"max_attempts": 1},
    on_cancel=_records_whether_the_run_finished,
)
async def async_fails_in_a_block_until_canceled(payload, ctx):
    """The async form of the task above, with an on_cancel hook that waits for the run
    function to end: the cancel must end the block's pause, not leave it to the hook's
    own timeout."""
    from trigger_celery import retry

    async def call():
        events.record(f"tries:{ctx.run.id}", 1)
        raise ConnectionError("the service is down")

    await retry.on_throw(call, max_attempts=5, min_timeout_in_ms=60_000, randomize=False)


@task(
    id="waits-once-with-attempt-hooks",
    retry={"max_attempts": 2, "min_timeout_in_ms": 50},
    on_start_attempt=_lifecycle("on_start_attempt"),
    on_wait=_lifecycle("on_wait"),
    on_resume=_lifecycle("on_resume"),
    on_success=_lifecycle("on_success"),
    on_complete=_lifecycle("on_complete"),
)
def waits_once_with_attempt_hooks(payload, ctx):
    from trigger_celery import wait

    events.record(f"lifecycle:{ctx.run.id}", ["run", ctx.attempt.number])
    wait.for_(seconds=3)  # long enough to suspend: the run is replayed when it resumes
    if ctx.attempt.number < payload["succeed_on"]:
        raise RuntimeError("fails after its wait")
    return "ok"


def _catch_error_reading_the_policy(ctx, error, retry, retry_at, retry_delay_in_ms):
    """Trigger.dev's catchError arguments: the policy, and the retry it would make."""
    events.record(
        f"catch-args:{ctx.run.id}",
        [
            ctx.attempt.number,
            retry.max_attempts,
            retry.min_timeout_in_ms,
            retry.factor,
            retry_delay_in_ms,
            retry_at is not None,
        ],
    )
    return {"retry_delay_in_ms": 10}


@task(
    id="catch-error-reads-the-policy",
    retry={"max_attempts": 3, "min_timeout_in_ms": 5000, "factor": 3, "randomize": False},
    catch_error=_catch_error_reading_the_policy,
)
def catch_error_reads_the_policy(payload, ctx):
    raise RuntimeError(f"attempt {ctx.attempt.number} fails")


def _parser_raising_unprintable(value):
    raise _UnprintableError()


@schema_task(id="parser-raises-unprintable", schema=_parser_raising_unprintable, retry=FAST_RETRY)
def parser_raises_unprintable(payload, ctx):
    events.record(f"attempts:{ctx.run.id}", ctx.attempt.number)


def _on_success_raising_a_huge_error(ctx):
    raise ValueError("z" * 1_000_000)


@task(id="on-success-raises-a-huge-error", on_success=_on_success_raising_a_huge_error)
def on_success_raises_a_huge_error(payload, ctx):
    return "done"
