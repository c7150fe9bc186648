"""Creating a batch of runs (SPEC 5): up to 1,000 runs in a few round trips.

Items may come from any iterable, generators included; they are consumed one at a time
and each is validated before anything is written, so a bad item 900 creates no run.
Runs are inserted with one bulk INSERT and enter their queues with one store call;
items with an idempotency key or a debounce are triggered one by one, since each
needs its own lookup.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Q

from trigger_celery.conf import get_settings
from trigger_celery.core import clock, run_events, tracing
from trigger_celery.core.context import parent_scope
from trigger_celery.core.handles import RunHandle
from trigger_celery.core.ids import new_id
from trigger_celery.core.options import TriggerOptions, parse_trigger_options, task_id_problem
from trigger_celery.core.serialization import encode, to_jsonable
from trigger_celery.core.statuses import IDEMPOTENCY_HOLDING_STATUSES, RunStatus
from trigger_celery.db import write_transaction
from trigger_celery.engine import dispatch, run_rows
from trigger_celery.engine.idempotency import resolve_key
from trigger_celery.engine.payloads import store_payload_json
from trigger_celery.engine.registry import TaskDefinition, registry
from trigger_celery.engine.triggering import build_run, trigger_task
from trigger_celery.errors import ConfigurationError, PayloadTooLargeError, SerializationError
from trigger_celery.models import Batch, Run

MAX_BATCH_ITEMS = 1000


@dataclass(frozen=True)
class BatchHandle:
    id: str
    runs: list[RunHandle]


def items_of(items: Any) -> Iterable[Any]:
    """``items`` checked to be a list (or another iterable) of items: a dict, a string or
    a number is refused by name rather than iterated or failing deep inside."""
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
        raise TypeError(f"a batch takes a list of items (dicts), got {items!r}")
    return items


def item_fields(
    item: Any, index: int, *, task_key: str | None
) -> tuple[Any, Any, Mapping[str, Any]]:
    if not isinstance(item, Mapping):
        raise ValueError(
            f"batch item {index} must be a dict with 'payload' (and 'options'), got {item!r}"
        )
    allowed = {"payload", "options"} | ({task_key} if task_key else set())
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise ValueError(
            f"batch item {index} has unknown key(s) {unknown}; accepted: {sorted(allowed)}"
        )
    options = item.get("options") or {}
    if not isinstance(options, Mapping):
        raise ValueError(f"batch item {index}: options must be a dict, got {options!r}")
    target = item.get(task_key) if task_key else None
    if task_key and target is None:
        raise ValueError(f"batch item {index} needs {task_key!r}")
    return target, item.get("payload"), options


Items = Iterable[tuple[str, TaskDefinition | None, bool, Any, Mapping[str, Any]]]


def create_batch(
    items: Items, batch_options: Mapping[str, Any], *, batch_id: str | None = None
) -> BatchHandle:
    """``items`` yields (task id, definition, validate payload?, payload, options).

    With ``batch_id`` given (a wait's batch, whose id is fixed by its parent and step),
    making the same batch again is safe: the row is kept, and children with idempotency
    keys are found instead of made twice.

    One ``trigger batch`` producer span covers it: every run of the batch carries that
    span's context, as a single trigger's run carries its ``trigger <task>`` span's.
    """
    fixed = batch_id is not None
    batch_id = batch_id or new_id("batch")
    attributes = {"trigger_celery.batch_id": batch_id}
    with tracing.span("trigger batch", attributes=attributes) as sp:
        handle = _create_batch(items, batch_options, batch_id, fixed=fixed)
        if sp is not None:
            sp.set_attribute("trigger_celery.batch_id", handle.id)  # a keyed batch's own
            sp.set_attribute("trigger_celery.run_count", len(handle.runs))
        return handle


def _create_batch(
    items: Items, batch_options: Mapping[str, Any], batch_id: str, *, fixed: bool
) -> BatchHandle:
    settings = get_settings()
    scope = parent_scope("a batch")  # before any item is read or written
    plain: list[tuple[int, Run]] = []
    special: list[tuple[int, str, TaskDefinition | None, Any, Mapping[str, Any]]] = []
    # Items with no options of their own share the batch's: one template run per task,
    # and only id and payload made per item (``run_rows``).
    shared_opts = parse_trigger_options(batch_options)
    if shared_opts.queue is not None:  # the batch's own option: no item to name
        registry.require_queue(shared_opts.queue)
    shared_is_special = shared_opts.idempotency_key is not None or shared_opts.debounce is not None
    siblings: dict[str, run_rows.SiblingRuns] = {}
    batch_keyed: set[int] = set()  # the items keyed by the batch's idempotency key
    count = 0
    for count, (task_id, definition, validate, payload, options) in enumerate(items, start=1):
        if count > MAX_BATCH_ITEMS:
            raise ValueError(f"a batch takes at most {MAX_BATCH_ITEMS} items; this one has more")
        if validate and definition is not None:
            with _naming_item(count - 1):
                definition.parse_payload(payload)
        if definition is None and (bad_id := task_id_problem(task_id)) is not None:
            raise ValueError(f"batch item {count - 1}: {bad_id}")  # by id: task()'s rule
        if not options and not shared_is_special:
            group = siblings.get(task_id)
            if group is None:
                template = build_run(task_id, None, shared_opts, definition)
                template.batch_id = batch_id
                group = siblings[task_id] = run_rows.SiblingRuns(template)
            run_id = new_id("run")
            with _naming_item(count - 1):
                inline, ref, text = store_payload_json(
                    run_id,
                    "payload",
                    to_jsonable(payload, what="payload"),
                    limit=settings.PAYLOAD_MAX_SIZE,
                )
            group.rows.append((run_id, inline, ref, count - 1, text))
            continue
        merged = {**batch_options, **options}
        if options.get("idempotency_key") is None and shared_opts.idempotency_key is not None:
            merged["idempotency_key"] = _item_key(batch_options["idempotency_key"], count - 1)
            batch_keyed.add(count - 1)
        try:
            opts = parse_trigger_options(merged)
            if opts.queue is not None:  # before anything is written, keyed items too
                registry.require_queue(opts.queue)
        except ValueError as exc:  # say which item
            kind = ConfigurationError if isinstance(exc, ConfigurationError) else ValueError
            raise kind(f"batch item {count - 1}: {exc}") from None
        if opts.idempotency_key is not None or opts.debounce is not None:
            with _naming_item(count - 1):  # triggered after the rows: refused before them
                _check_payload(payload, settings.PAYLOAD_MAX_SIZE)
            special.append((count - 1, task_id, definition, payload, merged))
            continue
        with _naming_item(count - 1):
            run = build_run(task_id, payload, opts, definition)
        run.batch_index = count - 1
        plain.append((count - 1, run))
    task_ids = {r.task_identifier for _, r in plain} | {s[1] for s in special} | set(siblings)
    handles: dict[int, RunHandle] = {}
    keyed = None
    if not fixed and shared_opts.idempotency_key is not None:
        wanted = _batch_keys(special, batch_keyed)
        keyed = next(iter(_holding_batches(wanted).values()), None) or _key_batch_id(
            resolve_key(batch_options["idempotency_key"]), task_ids, wanted
        )
    elif not fixed and not plain and not siblings:
        keyed = _batch_of_held_keys(special, count)
    batch_id = keyed or batch_id
    with write_transaction():
        row, created = Batch.objects.get_or_create(
            id=batch_id,
            defaults={
                "environment": settings.ENVIRONMENT,
                "task_identifier": next(iter(task_ids)) if len(task_ids) == 1 else "",
                "run_count": count,
                "parent_run_id": scope.ctx.run.id if scope else None,
            },
        )
        if not created and shared_opts.idempotency_key is not None and row.run_count != count:
            # The batch's key names a batch made with other items: its runs are found by
            # index, and the items past its end would join the old batch.
            raise ValueError(
                f"idempotency_key {batch_options['idempotency_key']!r} names batch {row.id} "
                f"of {row.run_count} item(s); this call has {count}: trigger a keyed batch "
                "again with the same items, or give other items another key"
            )
        if not created and keyed is None:
            # Made before (a wait's batch, replayed): its runs were written in the same
            # transaction as its row, so they are found by index instead of made again.
            handles = _existing_runs(batch_id)
            plain = [(i, r) for i, r in plain if i not in handles]
            for group in siblings.values():
                group.rows = [row for row in group.rows if row[3] not in handles]
            special = [item for item in special if item[0] not in handles]
        for _, run in plain:
            run.batch_id = batch_id
        Run.objects.bulk_create([r for _, r in plain], batch_size=500)
        for group in siblings.values():
            run_rows.insert(group)
    handles.update((i, RunHandle(r.id, r.task_identifier)) for i, r in plain)
    for task_id, group in siblings.items():
        handles.update((row[3], RunHandle(row[0], task_id)) for row in group.rows)
    queued = [r for _, r in plain if r.status == RunStatus.QUEUED]
    if queued:
        transaction.on_commit(lambda: dispatch.after_commit_dispatch(queued))
    for group in siblings.values():
        if group.template.status == RunStatus.QUEUED:
            transaction.on_commit(partial(dispatch.after_commit_fan_out, group.entries()))
    created = [run.id for _, run in plain] + [i for g in siblings.values() for i in g.ids]
    transaction.on_commit(partial(_publish_triggered, created))
    for index, task_id, _definition, payload, options in special:
        with _naming_item(index):
            handle = trigger_task(
                task_id, payload, options, {}, definition=None, batch=(batch_id, index)
            )
        handles[index] = handle
    if special:
        keyed_runs = {index: handles[index].id for index, *_ in special}
        _note_outside_runs(batch_id, keyed_runs, row.outside_runs or {})
    return BatchHandle(batch_id, [handles[i] for i in sorted(handles)])


def _note_outside_runs(batch_id: str, keyed: dict[int, str], row: dict[str, str]) -> None:
    """Record on the batch's row (whose ``outside_runs`` is ``row``) which keyed items'
    runs are not their own (a key found another batch's run, one triggered alone, or an
    earlier item's), so ``batch.retrieve`` lists the run of every item, as the handle
    does. One read; a write only when the record changes (a keyed batch triggered again
    may find an item's run in the batch this time)."""
    found = {
        run_id: (in_batch, index)
        for run_id, in_batch, index in Run.objects.filter(id__in=keyed.values()).values_list(
            "id", "batch_id", "batch_index"
        )
    }
    noted = {k: v for k, v in row.items() if int(k) not in keyed}
    # Another item's run of this batch (two items with one key) is outside this item.
    noted.update(
        (str(i), run_id) for i, run_id in keyed.items() if found.get(run_id) != (batch_id, i)
    )
    if noted != row:
        Batch.objects.filter(id=batch_id).update(outside_runs=noted or None)


def batch_options_of(options: Any, kw: Mapping[str, Any]) -> dict[str, Any]:
    """A batch's options given as a dict (or ``TriggerOptions``), keyword arguments, or
    both (keywords win), as a single trigger takes them."""
    if isinstance(options, TriggerOptions):
        options = {name: getattr(options, name) for name in options.model_fields_set}
    if options is not None and not isinstance(options, Mapping):
        raise ValueError(f"batch options must be a dict of trigger options, got {options!r}")
    return {**(options or {}), **kw}


def _check_payload(payload: Any, limit: int) -> None:
    """What storing ``payload`` would refuse (not JSON, a string no database stores,
    over ``limit`` bytes), found without storing it."""
    size = len(encode(to_jsonable(payload, what="payload"), what="payload"))
    if size > limit:
        raise PayloadTooLargeError(f"the payload is {size:,} bytes; the limit is {limit:,} bytes")


@contextmanager
def _naming_item(index: int) -> Iterator[None]:
    """An error about one item's payload says which item: this package's own in its
    message (the same type), another (a schema's ``ValidationError``) in a note, which
    its traceback shows."""
    try:
        yield
    except (SerializationError, PayloadTooLargeError) as exc:
        raise type(exc)(f"batch item {index}: {exc}") from exc
    except Exception as exc:
        exc.add_note(f"(in batch item {index})")
        raise


def _item_key(batch_key: str | list[str] | tuple[str, ...], index: int) -> list[str]:
    """A batch's idempotency key is the batch's: each item keys its run with it and its
    index, so the same batch triggered again finds its runs, and its items stay apart."""
    parts = [batch_key] if isinstance(batch_key, str) else list(batch_key)
    return [*parts, f"batch item {index}"]


def _batch_keys(
    special: list[tuple[int, str, Any, Any, Mapping[str, Any]]], batch_keyed: set[int]
) -> set[tuple[str, str]]:
    """(task, resolved key) of the items keyed by the batch's idempotency key. A run an
    item's key still holds is of the batch made before with that key (the items are then
    triggered into it, each finding its run, or making a new one if its key was
    released)."""
    return {
        (task_id, resolve_key(options["idempotency_key"]))
        for index, task_id, _definition, _payload, options in special
        if index in batch_keyed
    }


def _batch_of_held_keys(
    special: list[tuple[int, str, Any, Any, Mapping[str, Any]]], count: int
) -> str | None:
    """A batch whose items all carry keys of their own, triggered again: the one batch
    of as many items whose runs hold every key (its items then find their runs), rather
    than a new batch row no run would ever be in. None if any key is free, the runs are
    in several batches, or theirs had another number of items (a part of it, say)."""
    if any(options.get("idempotency_key") is None for *_, options in special):
        return None
    wanted = {
        (task_id, resolve_key(options["idempotency_key"]))
        for _index, task_id, _definition, _payload, options in special
    }
    held = _holding_batches(wanted)
    batches = set(held.values())
    if len(held) != len(wanted) or len(batches) != 1:
        return None
    found = batches.pop()
    return found if Batch.objects.filter(id=found, run_count=count).exists() else None


def _holding_batches(wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The batch of the run each (task, key) of ``wanted`` is held by, for those held."""
    if not wanted:
        return {}
    now = clock.now()
    holders = Run.objects.filter(
        Q(idempotency_key_expires_at__isnull=True) | Q(idempotency_key_expires_at__gt=now),
        environment=get_settings().ENVIRONMENT,
        task_identifier__in={task_id for task_id, _ in wanted},
        idempotency_key__in={key for _, key in wanted},
        status__in=IDEMPOTENCY_HOLDING_STATUSES,
        batch_id__isnull=False,
    ).values_list("task_identifier", "idempotency_key", "batch_id")
    return {(task, key): batch for task, key, batch in holders if (task, key) in wanted}


def _key_batch_id(key: str, task_ids: set[str], wanted: set[tuple[str, str]]) -> str:
    """The id of a keyed batch none of whose keys a run holds: made from its resolved
    key (scoped as the key is), its tasks and its items' keys, so that callers
    triggering it at once all make (or find) the one row, and a batch of other tasks or
    of another parent with the same key has another. The first is
    ``batch_k<hash>``; once its runs gave their keys up (they failed, or the keys
    expired), the next is ``..._1``, and so on. The newest is reused while it has no run
    yet (another caller is making it) or a run that holds its key."""
    parts = [get_settings().ENVIRONMENT, key, *sorted(task_ids)]
    parts += [f"{task}\0{item_key}" for task, item_key in sorted(wanted)]
    text = "\0".join(parts)
    prefix = f"batch_k{hashlib.sha256(text.encode()).hexdigest()[:24]}"
    # By exact ids, a generation at a time: the primary key serves no prefix search.
    made: list[str] = []
    for first in itertools.count(0, _GENERATIONS):
        ids = [f"{prefix}_{n}" if n else prefix for n in range(first, first + _GENERATIONS)]
        found = set(Batch.objects.filter(id__in=ids).values_list("id", flat=True))
        made += [i for i in ids if i in found]
        if len(found) < len(ids):
            break
    if not made:
        return prefix
    number, newest = max((int(i.rpartition("_")[2]) if i != prefix else 0, i) for i in made)
    runs = Run.objects.filter(batch_id=newest)
    now = clock.now()
    holding = runs.filter(
        Q(idempotency_key_expires_at__isnull=True) | Q(idempotency_key_expires_at__gt=now),
        idempotency_key__isnull=False,
        status__in=IDEMPOTENCY_HOLDING_STATUSES,
    )
    if not runs.exists() or holding.exists():
        return newest
    return f"{prefix}_{number + 1}"


# How many of a key's batch ids one look-up asks for.
_GENERATIONS = 20


def _existing_runs(batch_id: str) -> dict[int, RunHandle]:
    """The runs a batch already has, by index (runs triggered one by one, with keys of
    their own, are not among them: their keys find them)."""
    return {
        index: RunHandle(run_id, task_id)
        for run_id, task_id, index in Run.objects.filter(
            batch_id=batch_id, batch_index__isnull=False
        ).values_list("id", "task_identifier", "batch_index")
    }


def _publish_triggered(run_ids: list[str]) -> None:
    run_events.publish_many(run_ids, run_events.TRIGGERED)


def trigger_batch_of_task(
    task_id: str,
    definition: TaskDefinition | None,
    items: Iterable[Mapping[str, Any]],
    batch_options: Mapping[str, Any],
) -> BatchHandle:
    def gen() -> Iterable[tuple[str, TaskDefinition | None, bool, Any, Mapping[str, Any]]]:
        for i, item in enumerate(items_of(items)):
            _, payload, options = item_fields(item, i, task_key=None)
            yield (
                task_id,
                definition or registry.get_task(task_id),
                definition is not None,
                payload,
                options,
            )

    return create_batch(gen(), batch_options)
