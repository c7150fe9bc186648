"""Creating runs: ``my_task.trigger(...)`` and ``tasks.trigger("id", ...)``.

A trigger validates everything first (options, payload, sizes), then writes one Run
row. Only after the row is committed does the run enter its queue, so a worker can
never receive a run the database does not have yet. A run that would start next
anyway takes its slot before its row is written (``dispatch.claim_first``): the row is
written DEQUEUED and sent once committed, one statement instead of two.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction

from trigger_celery.conf import get_settings
from trigger_celery.coordination import Claim
from trigger_celery.core import clock, run_events, tracing
from trigger_celery.core.context import parent_scope
from trigger_celery.core.environments import development_ttl_problem
from trigger_celery.core.handles import RunHandle
from trigger_celery.core.ids import new_id
from trigger_celery.core.options import TriggerOptions, parse_trigger_options
from trigger_celery.core.retry import RetryPolicy
from trigger_celery.core.serialization import to_jsonable
from trigger_celery.core.statuses import RunStatus
from trigger_celery.db import heal_connections, lock_name, write_transaction
from trigger_celery.engine import dispatch, realtime
from trigger_celery.engine.compiled_sql import insert_row
from trigger_celery.engine.idempotency import (
    DEFAULT_TTL,
    find_cached,
    record_joined,
    resolve_key,
)
from trigger_celery.engine.payloads import discard_payload, store_payload
from trigger_celery.engine.registry import TaskDefinition, registry
from trigger_celery.models import Run


def trigger_task(
    task_id: str,
    payload: Any,
    options: Mapping[str, Any] | TriggerOptions | None,
    extra: Mapping[str, Any],
    *,
    definition: TaskDefinition | None = None,
    replayed_from: str | None = None,
    batch: tuple[str, int] | None = None,
    key_is_new: bool = False,
) -> RunHandle:
    """Trigger ``task_id``. With ``definition`` given the payload is validated first
    (``my_task.trigger``); by id (``tasks.trigger``) it is not.

    ``key_is_new``: the caller knows no run holds the idempotency key yet (a wait step
    reached for the first time), so it is not looked up before the INSERT. A race is
    still decided by the unique constraint, and the loser finds the winner."""
    with tracing.span(f"trigger {task_id}", attributes={"trigger_celery.task": task_id}) as sp:
        handle = _trigger_task(
            task_id,
            payload,
            options,
            extra,
            definition=definition,
            replayed_from=replayed_from,
            batch=batch,
            key_is_new=key_is_new,
        )
        if sp is not None:
            sp.set_attribute("trigger_celery.run_id", handle.id)
        return handle


def _trigger_task(
    task_id: str,
    payload: Any,
    options: Mapping[str, Any] | TriggerOptions | None,
    extra: Mapping[str, Any],
    *,
    definition: TaskDefinition | None,
    replayed_from: str | None,
    batch: tuple[str, int] | None,
    key_is_new: bool,
) -> RunHandle:
    opts = parse_trigger_options(options, **extra)
    heal_connections()  # outside a request nothing else reconnects after an outage
    validate = definition is not None
    if definition is None:
        definition = registry.get_task(task_id)
    if validate and definition is not None:
        definition.parse_payload(payload)
    run = build_run(task_id, payload, opts, definition)
    run.replayed_from_id = replayed_from
    if batch is not None:
        run.batch_id, run.batch_index = batch
    claimed: _Claimed | None = None
    # DELAYED, or PENDING_VERSION when no worker knows the task yet: debounced alike.
    debounced = opts.debounce is not None
    if opts.idempotency_key is not None and not debounced:
        cached, claimed = _save_idempotent(run, opts, look_up=not key_is_new)
        if cached is not None:
            discard_payload(run.payload_ref)
            return RunHandle(cached.id, task_id, is_cached=True)
    elif debounced:
        # Idempotency wins over debounce when its key holds a run (SPEC 5); otherwise
        # the trigger is debounced, and the run it creates or joins holds the key.
        if opts.idempotency_key is not None:
            cached = _take_key(run, opts, look_up=not key_is_new)
            if cached is not None:
                discard_payload(run.payload_ref)
                return RunHandle(cached.id, task_id, is_cached=True)
        existing_id = _save_debounced(run, opts)
        if isinstance(existing_id, Run):  # another trigger took the key meanwhile
            discard_payload(run.payload_ref)
            return RunHandle(existing_id.id, task_id, is_cached=True)
        if existing_id is not None:
            return RunHandle(existing_id, task_id)
    else:
        claimed = _insert(run)
    if claimed is not None:  # committed already (autocommit): send it now
        realtime.notify(run.id)
        run_events.publish(run.id, run_events.TRIGGERED)
        dispatch.send_claimed(run, *claimed)
        return RunHandle(run.id, task_id)
    transaction.on_commit(partial(run_events.publish, run.id, run_events.TRIGGERED))
    if run.status == RunStatus.QUEUED:
        transaction.on_commit(lambda: dispatch.after_commit_dispatch([run]))
    return RunHandle(run.id, task_id)


# The slot a run took before its row was written, and when (``time.monotonic()``).
_Claimed = tuple[Claim, float]


def _insert(run: Run, *, own_transaction: bool = False) -> _Claimed | None:
    """INSERT ``run``. A run that can start at once takes its slot first and is written
    DEQUEUED (``dispatch.claim_first``); if the INSERT fails, the slot is given back
    (``own_transaction``: inside the trigger's own transaction, whose caller gives it
    back if the COMMIT fails)."""
    claim = dispatch.claim_first(run, own_transaction=own_transaction)
    if claim is None:
        insert_row(run)
        return None
    claimed_at = time.monotonic()
    run.status = RunStatus.DEQUEUED  # it holds its slot: written dispatched
    try:
        insert_row(run)
    except BaseException:
        run.status = RunStatus.QUEUED
        dispatch.give_back(claim)
        raise
    return claim, claimed_at


def build_run(
    task_id: str,
    payload: Any,
    opts: TriggerOptions,
    definition: TaskDefinition | None,
) -> Run:
    """Everything about a new run except saving it: the one place options become fields."""
    scope = parent_scope(f"a run of {task_id!r}")  # first: a refusal writes nothing
    settings = get_settings()
    now = clock.now()
    run_id = new_id("run")
    payload_json = to_jsonable(payload, what="payload")
    inline, ref = store_payload(run_id, "payload", payload_json, limit=settings.PAYLOAD_MAX_SIZE)

    if opts.queue is not None:
        queue_name = registry.require_queue(opts.queue).name
    elif definition is not None:
        queue_name = definition.queue.name
    else:
        queue_name = task_id

    if opts.max_attempts is not None:
        max_attempts = opts.max_attempts
    elif definition is not None and definition.retry is not None:
        max_attempts = definition.retry.max_attempts
    else:
        max_attempts = RetryPolicy.from_value(settings.RETRY).max_attempts

    ttl = opts.ttl
    if ttl is None and settings.ENVIRONMENT == "DEVELOPMENT":
        ttl = settings.DEVELOPMENT_TTL
        if (problem := development_ttl_problem(ttl)) is not None:
            # System check E014 says so too, but a web server runs no checks.
            raise ImproperlyConfigured(problem)

    delayed_until = opts.delay_until(now)
    if opts.debounce is not None and delayed_until is None:
        # A debounced run waits for its window, like a delayed one.
        delayed_until = now + timedelta(seconds=opts.debounce.delay)
    if definition is None:
        status = RunStatus.PENDING_VERSION
    elif delayed_until is not None:
        status = RunStatus.DELAYED
    else:
        status = RunStatus.QUEUED
    queued = status == RunStatus.QUEUED

    parent_id = root_id = None
    depth = 0
    if scope is not None:
        parent_id = scope.ctx.run.id
        root_id = scope.ctx.run.root_id or scope.ctx.run.id
        depth = scope.ctx.run.depth + 1

    return Run(
        id=run_id,
        task_identifier=task_id,
        status=status,
        environment=settings.ENVIRONMENT,
        payload=inline,
        payload_ref=ref,
        options=opts.to_dict(),
        queue=queue_name,
        concurrency_key=opts.concurrency_key,
        priority=opts.priority or 0,
        machine=opts.machine or (definition.machine if definition else None) or "",
        region=opts.region or "",
        tags=list(opts.tags or ()),
        metadata=dict(opts.metadata or {}),
        max_attempts=max_attempts,
        max_duration=opts.max_duration or (definition.max_duration if definition else None),
        ttl=ttl,
        parent_id=parent_id,
        root_id=root_id,
        depth=depth,
        delayed_until=delayed_until,
        created_at=now,
        queued_at=now if queued else None,
        ttl_expires_at=now + timedelta(seconds=ttl) if queued and ttl else None,
        trace_context=tracing.carrier(),
    )


def _save_idempotent(
    run: Run, opts: TriggerOptions, *, look_up: bool = True, tries: int = 5
) -> tuple[Run | None, _Claimed | None]:
    """Save ``run`` under its idempotency key, or return the run that already holds it
    (with the slot ``run`` took first, if it did). ``look_up=False``: no lookup before
    the INSERT, only after losing it.

    Triggers with one key take it one at a time (``lock_name``; SQLite's write lock), so
    one that joins a debounced run (``JoinedKey``) and one that inserts a run cannot
    both succeed; the unique constraint on (environment, task, key) still decides a
    race with a process that takes no such lock.
    """
    cached = _take_key(run, opts, look_up=look_up)
    if cached is not None:
        return cached, None
    key, now = run.idempotency_key, clock.now()
    assert key is not None
    nested = connection.in_atomic_block
    claimed: _Claimed | None = None
    try:
        if not look_up:
            # A key only this caller makes (a wait step's child on its first attempt):
            # nobody joins it, and the unique constraint alone decides a replay's race.
            if nested:
                with write_transaction():  # a savepoint: a lost race must not break it
                    insert_row(run)
                return None, None
            return None, _insert(run)  # one statement, committed on its own
        # A savepoint inside the caller's transaction: a lost race must not break it.
        with write_transaction():
            # One key at a time: a trigger joining a debounced run records the key in
            # another table (JoinedKey), which this run's unique constraint cannot see.
            _lock_key(run, key)
            cached = find_cached(run.environment, run.task_identifier, key, now)
            if cached is not None:
                return cached, None
            if nested:
                insert_row(run)
            else:
                # Its slot is given back below if the COMMIT fails.
                claimed = _insert(run, own_transaction=True)
        return None, claimed
    except BaseException as exc:
        if claimed is not None:
            dispatch.give_back(claimed[0])
        if not isinstance(exc, IntegrityError):
            raise
        cached = find_cached(run.environment, run.task_identifier, key, now)
        if cached is None:
            # Held when the INSERT ran, by a run that has released it since (it failed
            # or expired just now): the key is free, try again.
            if tries <= 1:
                raise RuntimeError(
                    f"idempotency key {opts.idempotency_key!r} is too contended; try again"
                ) from None
            return _save_idempotent(run, opts, tries=tries - 1)
        return cached, None


def _lock_key(run: Run, key: str) -> None:
    lock_name("idempotency", run.environment, run.task_identifier, key)


def _take_key(run: Run, opts: TriggerOptions, *, look_up: bool) -> Run | None:
    """The run holding ``opts.idempotency_key`` (when ``look_up``), or None with the key
    and its expiry set on ``run`` for its INSERT."""
    assert opts.idempotency_key is not None
    now = clock.now()
    key = resolve_key(opts.idempotency_key)
    if look_up:
        cached = find_cached(run.environment, run.task_identifier, key, now)
        if cached is not None:
            return cached
    run.idempotency_key = key
    ttl = timedelta(seconds=opts.idempotency_key_ttl) if opts.idempotency_key_ttl else DEFAULT_TTL
    run.idempotency_key_expires_at = now + ttl
    return None


# What a trailing-mode debounce takes from the newest trigger.
_TRAILING_FIELDS = (
    "payload",
    "payload_ref",
    "metadata",
    "tags",
    "max_attempts",
    "max_duration",
    "machine",
)


# The trigger options behind _TRAILING_FIELDS: a replay rebuilds the run from them.
_TRAILING_OPTIONS = ("metadata", "tags", "max_attempts", "max_duration", "machine")


def _trailing_options(kept: dict[str, Any], latest: dict[str, Any]) -> dict[str, Any]:
    """The options of a pending run whose trailing trigger replaced its data."""
    merged = {k: v for k, v in kept.items() if k not in _TRAILING_OPTIONS}
    merged.update({k: v for k, v in latest.items() if k in _TRAILING_OPTIONS})
    return merged


def _save_debounced(run: Run, opts: TriggerOptions) -> str | Run | None:
    """Push the pending run of this debounce key instead of creating one (SPEC 5).

    Returns the id of the run that absorbed this trigger (which then holds the trigger's
    idempotency key too: ``record_joined``), the run that holds that key if another
    trigger with it won the INSERT (idempotency wins), or None when ``run`` was saved as
    a new pending run. Triggers of one debounce key take it one at a time (``lock_name``;
    SQLite's write lock), and the partial unique index on (task, debounce key) for DELAYED
    runs backs that up. A run waiting for a worker that knows its task (PENDING_VERSION)
    is found and pushed the same way; it is outside the index (workers of the release
    before hand runs back with their key), so only the lock keeps two first triggers of
    an unknown task from making two runs.
    """
    assert opts.debounce is not None
    debounce = opts.debounce
    for _ in range(3):
        now = clock.now()
        with write_transaction():
            if run.idempotency_key is not None:  # as _save_idempotent: one key at a time
                _lock_key(run, run.idempotency_key)
                cached = find_cached(run.environment, run.task_identifier, run.idempotency_key, now)
                if cached is not None:
                    return cached
            # PENDING_VERSION runs are outside the unique index on pending debounce keys.
            lock_name("debounce", run.environment, run.task_identifier, debounce.key)
            pending = (
                Run.objects.select_for_update()
                .filter(
                    environment=run.environment,
                    task_identifier=run.task_identifier,
                    debounce_key=debounce.key,
                    status__in=(RunStatus.DELAYED, RunStatus.PENDING_VERSION),
                )
                .first()
            )
            if pending is not None:
                start = max(pending.delayed_until or now, now + timedelta(seconds=debounce.delay))
                first = pending.debounce_first_at or pending.created_at
                if debounce.max_delay is None or start <= first + timedelta(
                    seconds=debounce.max_delay
                ):
                    fields: dict[str, object] = {"delayed_until": start}
                    if debounce.mode == "trailing":
                        fields.update({f: getattr(run, f) for f in _TRAILING_FIELDS})
                        fields["options"] = _trailing_options(pending.options, run.options)
                        unused = pending.payload_ref  # replaced by this trigger's
                    else:
                        unused = run.payload_ref  # the first trigger's data is kept
                    Run.objects.filter(id=pending.id).update(**fields)
                    record_joined(run, pending)
                    transaction.on_commit(partial(discard_payload, unused))
                    return pending.id
                # Postponed long enough: the pending run keeps its time and leaves the
                # key; this trigger opens a new debounce window.
                Run.objects.filter(id=pending.id).update(debounce_key=None)
            run.debounce_key = debounce.key
            run.debounce_first_at = now
            run.delayed_until = now + timedelta(seconds=debounce.delay)
            try:
                with write_transaction():
                    insert_row(run)
            except IntegrityError:
                key = run.idempotency_key
                cached = key and find_cached(run.environment, run.task_identifier, key, now)
                if cached:
                    return cached  # another trigger with this idempotency key won
                continue  # another trigger created the pending run first: join it
            return None
    raise RuntimeError(f"debounce key {debounce.key!r} is too contended; try again")
