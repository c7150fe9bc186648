"""What a replayed wait step checks against the step it recorded (SPEC 7).

A replay runs the code from the top, and each wait step that has a row gives back its
recorded result, in call order. A step whose kind or task changed, or a batch step with
another number of items or other tasks, cannot: its results would go to the wrong
items. That is a :class:`ReplayMismatchError`, and an attempt failing from it is never
retried, also when the code raised another error from it (``raise ... from``, an
``asyncio.TaskGroup``'s group; ``core.decisions.mismatch_in``): every replay would meet
it again. A step asked for with another payload than it recorded gives back its
result all the same (a payload holding a time or a uuid4 differs on every replay) and
warns once, on the run's log lines, naming both payloads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from trigger_celery.core.serialization import to_jsonable
from trigger_celery.engine.payloads import load_payload
from trigger_celery.errors import ReplayMismatchError
from trigger_celery.models import Run, Waitpoint
from trigger_celery.worker.logger import logger as run_logger

log = logging.getLogger("trigger_celery.worker")

# A batch wait's items: (task id, payload, options, definition to validate with or None).
BatchItems = list[tuple[str, Any, Mapping[str, Any], Any]]

_ANOTHER_PATH = (
    "If the code before this wait took another path on replay (a loop over rows its "
    "children change), loop over a list fixed in the payload"
)


def keyed_by_user(options: Mapping[str, Any]) -> bool:
    """Whether a child's options carry a key or a debounce of the user's: its run may be
    one found by them, with another payload by design. An explicit None is no key."""
    return options.get("idempotency_key") is not None or options.get("debounce") is not None


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 200 else f"{text[:200]}..."


def _as_stored(payload: Any) -> Any:
    """``payload`` as it reads back once stored: through JSON, tuples become lists and
    keys strings."""
    return json.loads(json.dumps(to_jsonable(payload, what="payload")))


def same_child_payload(wp: Waitpoint, payload: Any) -> None:
    """Warn, on the run's log lines, when a replay's step asks for a child with another
    payload than the one the step triggered before the run suspended. The step still
    gives back its recorded result, in call order (SPEC 7): a payload holding a value
    made anew on each execution (a time, a uuid4) is the same child asked for again. But
    a loop over rows its children change (``for order in pending_orders()``) reaches
    step n with another item, and gets the old item's result: the warning names both."""
    inline, ref = getattr(wp, "child_payload", None), getattr(wp, "child_payload_ref", None)
    if wp.child_run_id is None or ref is None:
        return  # the child was deleted: nothing to compare with
    try:
        recorded = load_payload(inline, ref)
        asked = _as_stored(payload)
    except Exception:  # a diagnostic never fails the attempt (storage unreadable, ...)
        log.warning("run %s: could not compare wait step %d", wp.run_id, wp.step, exc_info=True)
        return
    if asked != recorded and not passed_before(wp):
        run_logger.warn(
            f"wait step {wp.step} replayed {wp.label!r} with payload {_shown(asked)}, but "
            f"the child it recorded ({wp.child_run_id}) was triggered with "
            f"{_shown(recorded)}: the step gives back that child's result. {_ANOTHER_PATH}, "
            "or wait on them all with one batch_trigger_and_wait",
            step=wp.step,
            child_run_id=wp.child_run_id,
        )


def passed_before(wp: Waitpoint) -> bool:
    """Whether an earlier replay already went past ``wp``'s step (and warned of it): a
    later step has a row. Read with the step's row for a batch (``passed``)."""
    passed = getattr(wp, "passed", None)
    if passed is not None:
        return bool(passed)
    return Waitpoint.objects.filter(run_id=wp.run_id, step__gt=wp.step).exists()


def same_batch_items(wp: Waitpoint, items: BatchItems) -> None:
    """Refuse a replay whose batch step has other items (count or tasks, in order) than
    the batch it recorded: its results would be given to the wrong items. Items asked
    for with other payloads than their children's are warned of, once per step."""
    if wp.completed_at is None or not isinstance(wp.result, list):
        return  # not done yet: the replay suspends again, and compares when it is
    recorded = [r.get("task_identifier") for r in wp.result]
    asked = [item[0] for item in items]
    if len(recorded) != len(asked) or any(
        old and old != new for old, new in zip(recorded, asked, strict=True)
    ):
        raise ReplayMismatchError(
            f"wait step {wp.step} of run {wp.run_id} waited on a batch of {len(recorded)} "
            f"items before the run suspended, and its replay asks for {len(asked)} items"
            f"{'' if len(recorded) != len(asked) else ' of other tasks'}: the code before "
            "this wait took another path on replay. Waits must be reached in the same order "
            "with the same items on every replay",
        )
    if not passed_before(wp):
        _same_item_payloads(wp, items)


def _same_item_payloads(wp: Waitpoint, items: BatchItems) -> None:
    """``same_child_payload`` for the items of a batch step: one warning for the step,
    naming the first item whose payload differs (and how many others do). Payloads kept
    in storage (over the inline limit) are not read back for it: a batch of large
    payloads would cost up to 1,000 storage reads, for a diagnostic."""
    try:
        children = _children_by_index(wp)
        differ = []
        for index, (_task, payload, options, _definition) in enumerate(items):
            child = children.get(index)
            if child is None or child[2] or keyed_by_user(options):
                continue  # deleted, in storage, or maybe found by a key of the user's
            recorded = child[1]
            asked = _as_stored(payload)
            if asked != recorded:
                differ.append((index, child[0], asked, recorded))
    except Exception:  # a diagnostic never fails the attempt (storage unreadable, ...)
        log.warning("run %s: could not compare wait step %d", wp.run_id, wp.step, exc_info=True)
        return
    if not differ:
        return
    index, child_id, asked, recorded = differ[0]
    more = len(differ) - 1
    others = f" (and {more} more item{'s' if more > 1 else ''})" if more else ""
    run_logger.warn(
        f"wait step {wp.step} replayed batch {wp.label!r} with payload {_shown(asked)} for "
        f"item {index}{others}, but the child it recorded for that item ({child_id}) was "
        f"triggered with {_shown(recorded)}: each item gets its recorded child's result. "
        f"{_ANOTHER_PATH}",
        step=wp.step,
        item=index,
        child_run_id=child_id,
    )


def _children_by_index(wp: Waitpoint) -> dict[int, tuple[str, Any, str]]:
    """(run id, inline payload, payload ref) of each item's child, by item index."""
    if wp.item_runs:  # a key of the user's found some outside the batch: listed by item
        rows = Run.objects.filter(id__in=wp.item_runs).order_by()
        found = {r[0]: r for r in rows.values_list("id", "payload", "payload_ref")}
        return {i: found[run_id] for i, run_id in enumerate(wp.item_runs) if run_id in found}
    rows = Run.objects.filter(batch_id=wp.batch_id, batch_index__isnull=False).order_by()
    return {
        index: (run_id, inline, ref)
        for run_id, inline, ref, index in rows.values_list(
            "id", "payload", "payload_ref", "batch_index"
        )
    }
