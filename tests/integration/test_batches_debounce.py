"""Debounce, batches, metadata while running, realtime snapshots (SPEC 5, 6)."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from celery import current_app
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings
from pydantic import ValidationError

from tests.integration.harness import finished, herd, wait_for
from tests.taskapp import events
from tests.taskapp.tasks import echo, greet
from trigger_celery import batch, runs, tasks
from trigger_celery.core.options import parse_trigger_options
from trigger_celery.errors import PayloadTooLargeError, SerializationError
from trigger_celery.models import Run

pytestmark = pytest.mark.integration


# -- debounce ---------------------------------------------------------------------------


def test_debounce_leading_keeps_the_first_payload_and_pushes_the_start(live):
    first = tasks.trigger("echo", {"n": 1}, debounce={"key": "user-1", "delay": "2s"})
    until = runs.retrieve(first).delayed_until
    time.sleep(1)  # the second trigger must come later for the push to be measurable
    pushed_at = datetime.now(UTC)
    second = tasks.trigger("echo", {"n": 2}, debounce={"key": "user-1", "delay": "2s"})
    assert second.id == first.id
    assert runs.retrieve(first).delayed_until > until
    run = finished(first)
    assert run.output["payload"] == {"n": 1}
    assert (run.started_at - pushed_at).total_seconds() >= 2.0  # measured from the last trigger
    assert Run.objects.filter(task_identifier="echo").count() == 1
    third = tasks.trigger("echo", {"n": 3}, debounce={"key": "user-1", "delay": "1s"})
    assert third.id != first.id  # the first one has started: a new window


def test_debounce_trailing_takes_the_latest_payload_and_tags(live):
    opts = {"key": "user-2", "delay": "1s", "mode": "trailing"}
    first = tasks.trigger("echo", {"n": 1}, debounce=opts, tags=["a"])
    tasks.trigger("echo", {"n": 2}, debounce=opts, tags=["b"])
    last_at = datetime.now(UTC)
    last = tasks.trigger("echo", {"n": 3}, debounce=opts, tags=["c"])
    assert last.id == first.id
    run = finished(first)
    assert run.output == {"payload": {"n": 3}, "tags": ["c"]}
    assert (run.started_at - last_at).total_seconds() >= 1.0
    # A replay is the run as it ran: the latest trigger's data, not the first's.
    replay = finished(runs.replay(first))
    assert replay.output == {"payload": {"n": 3}, "tags": ["c"]}


def test_debounce_max_delay_starts_a_new_run_instead_of_postponing_forever(live):
    opts = {"key": "user-3", "delay": "2s", "max_delay": "1m"}
    first = tasks.trigger("echo", {"n": 1}, debounce=opts)
    # Its window opened a minute ago: a push now would go past first + max_delay.
    opened = Run.objects.get(id=first.id).debounce_first_at - timedelta(minutes=1)
    Run.objects.filter(id=first.id).update(debounce_first_at=opened)
    second = tasks.trigger("echo", {"n": 2}, debounce=opts)
    assert second.id != first.id
    assert finished(first).status == "COMPLETED"
    assert finished(second).status == "COMPLETED"


def test_debounce_keys_are_per_task_and_idempotency_wins(live):
    a = tasks.trigger("echo", {}, debounce={"key": "shared", "delay": "1s"})
    b = tasks.trigger("hello-world", {"message": "x"}, debounce={"key": "shared", "delay": "1s"})
    assert a.id != b.id
    first = tasks.trigger(
        "echo", {"n": 1}, idempotency_key="idem", debounce={"key": "d", "delay": "1s"}
    )
    again = tasks.trigger(
        "echo", {"n": 2}, idempotency_key="idem", debounce={"key": "d", "delay": "1s"}
    )
    assert again.is_cached and again.id == first.id


def test_idempotency_wins_over_debounce_only_when_its_key_finds_a_run(live):
    """Triggers with their own idempotency keys still debounce into one run; the run's
    own key finds it again (as two parents' trigger_and_wait with one debounce key)."""
    debounce = {"key": "keyed-d", "delay": "3s"}
    a = tasks.trigger("echo", {"n": 1}, idempotency_key="i1", debounce=debounce)
    b = tasks.trigger("echo", {"n": 2}, idempotency_key="i2", debounce=debounce)
    c = tasks.trigger("echo", {"n": 3}, debounce=debounce)
    assert a.id == b.id == c.id and not b.is_cached
    again = tasks.trigger("echo", {"n": 4}, idempotency_key="i1", debounce=debounce)
    assert again.is_cached and again.id == a.id
    assert finished(a).output["payload"] == {"n": 1}  # leading: the first trigger's


def test_concurrent_debounced_triggers_make_one_run(live):
    handles, errors = [], []
    barrier = threading.Barrier(20)

    def trigger(i):
        try:
            barrier.wait()
            handles.append(tasks.trigger("echo", {"i": i}, debounce={"key": "herd", "delay": "2s"}))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=trigger, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len({h.id for h in handles}) == 1
    assert finished(handles[0]).status == "COMPLETED"


# -- batches --------------------------------------------------------------------------------


def test_batch_trigger_from_a_generator_with_per_item_options(live):
    def items():
        for i in range(5):
            yield {"payload": {"i": i}, "options": {"tags": [f"item-{i}"]}}

    handle = echo.batch_trigger(items(), metadata={"batch": True})
    assert len(handle.runs) == 5
    for h in handle.runs:
        finished(h)
    record = batch.retrieve(handle.id)
    assert record.run_count == 5
    assert [r.payload for r in record.runs] == [{"i": i} for i in range(5)]
    assert [r.tags for r in record.runs] == [[f"item-{i}"] for i in range(5)]
    assert all(r.batch_id == handle.id and r.metadata == {"batch": True} for r in record.runs)


def test_a_bad_item_option_names_its_item_and_creates_nothing(live):
    items = [{"payload": {"i": 0}}, {"payload": {"i": 1}, "options": {"ttl": "bogus"}}]
    with pytest.raises(ValueError, match=r"(?s)batch item 1: .*ttl: 'bogus'"):
        echo.batch_trigger(items)
    assert not Run.objects.filter(payload={"i": 1}).exists()


def test_a_bad_item_payload_names_its_item_and_creates_nothing(live):
    """A payload that is not JSON, or that its schema refuses: the error says which item
    (the schema's own error, in a note its traceback shows), and no run is written, also
    when the item is keyed (triggered after the batch's rows)."""
    good = [{"payload": {"name": "a"}}] * 3
    with pytest.raises(SerializationError, match=r"^batch item 2: .*not JSON"):
        echo.batch_trigger([*good[:2], {"payload": {"n": object()}}])
    keyed = {"payload": {"n": object()}, "options": {"idempotency_key": "k-bad-item"}}
    with pytest.raises(SerializationError, match=r"^batch item 3: "):
        echo.batch_trigger([*good, keyed])
    nul = {"payload": {"s": "a\x00b"}, "options": {"debounce": {"key": "d", "delay": "1s"}}}
    with pytest.raises(SerializationError, match=r"^batch item 3: .*NUL"):
        echo.batch_trigger([*good, nul])
    big = {"payload": {"s": "x" * 200}, "options": {"idempotency_key": "k-big-item"}}
    config = {**settings.TRIGGER_CELERY, "PAYLOAD_MAX_SIZE": 100}
    with (
        override_settings(TRIGGER_CELERY=config),
        pytest.raises(PayloadTooLargeError, match=r"^batch item 3: the payload is 208 bytes"),
    ):
        echo.batch_trigger([*good, big])
    with pytest.raises(ValidationError) as refused:
        greet.batch_trigger([*good, {"payload": {"name": None}}])
    assert "(in batch item 3)" in refused.value.__notes__
    assert not Run.objects.exists()


def test_batch_options_may_be_a_dict_as_a_triggers_are(live):
    handle = echo.batch_trigger([{"payload": {}}], {"tags": ["as-dict"]}, priority=3)
    by_id = tasks.batch_trigger("echo", [{"payload": {}}], {"tags": ["by-id"]})
    mixed = batch.trigger([{"id": "echo", "payload": {}}], {"tags": ["mixed"]})
    typed = echo.batch_trigger([{"payload": {}}], parse_trigger_options(tags=["typed"]))
    assert runs.retrieve(typed.runs[0]).tags == ["typed"]
    assert runs.retrieve(handle.runs[0]).tags == ["as-dict"]
    assert runs.retrieve(handle.runs[0]).priority == 3
    assert runs.retrieve(by_id.runs[0]).tags == ["by-id"]
    assert runs.retrieve(mixed.runs[0]).tags == ["mixed"]
    with pytest.raises(ValueError, match=r"batch options must be a dict .*got \['tags'\]"):
        echo.batch_trigger([{"payload": {}}], ["tags"])


def test_batch_of_1000_uses_a_constant_number_of_queries(live, django_assert_max_num_queries):
    items = ({"payload": {"i": i}} for i in range(1000))  # a generator
    # PostgreSQL inserts the 1,000 rows in two statements; SQLite caps a statement at
    # 999 parameters, so Django splits the same bulk insert into ~21-row statements.
    budget = 12 if connection.vendor == "postgresql" else 60
    with django_assert_max_num_queries(budget):
        handle = tasks.batch_trigger("not-deployed-yet", items)
    assert len(handle.runs) == 1000
    assert Run.objects.filter(batch_id=handle.id).count() == 1000


def test_a_batch_without_item_options_writes_the_rows_the_one_by_one_path_writes(live):
    """Items without options of their own share a template row (COPY on PostgreSQL);
    an item with options goes the per-item way. Both must write the same columns."""
    shared = {"tags": ["t"], "metadata": {"m": 1}, "max_attempts": 2, "priority": 5}
    handle = tasks.batch_trigger(
        "not-deployed-yet",
        [
            {"payload": {"i": 0, "text": "é\t\\n"}},
            {"payload": None},
            {"payload": {"i": 2}, "options": {"concurrency_key": None}},
        ],
        **shared,
    )
    rows = list(Run.objects.filter(batch_id=handle.id).order_by("batch_index").values())
    assert [r["id"] for r in rows] == [h.id for h in handle.runs]
    assert [r["payload"] for r in rows] == [{"i": 0, "text": "é\t\\n"}, None, {"i": 2}]
    varying = {"id", "payload", "batch_index", "created_at", "updated_at", "queued_at"}
    by_template, one_by_one = rows[1], rows[2]
    assert {k: v for k, v in by_template.items() if k not in varying} == {
        k: v for k, v in one_by_one.items() if k not in varying
    }
    assert by_template["status"] == "PENDING_VERSION" and by_template["tags"] == ["t"]


def test_a_large_batch_is_sent_by_a_worker_not_by_its_caller(fresh_store):
    """The caller claims and sends the first few runs; one message asks a worker to send
    the rest. With that message lost, the pump sends them. (The store and the broker
    start empty: a message an earlier test left would be counted in the purge.)"""
    own = fresh_store
    from trigger_celery.engine.dispatch import FAN_OUT_INLINE

    handle = tasks.batch_trigger("quiet", [{"payload": {"i": i}} for i in range(40)])
    ids = [h.id for h in handle.runs]
    statuses = list(Run.objects.filter(id__in=ids).values_list("status", flat=True))
    assert statuses.count("DEQUEUED") == FAN_OUT_INLINE  # sent by the caller
    assert statuses.count("QUEUED") == 40 - FAN_OUT_INLINE  # left to a worker
    own.worker()  # no beat: the fan-out message, and each run's end, send the rest
    for h in handle.runs:
        assert finished(h).status == "COMPLETED"
    own.stop()
    current_app.control.purge()  # what the worker sent and did not run before it stopped

    lost = tasks.batch_trigger("quiet", [{"payload": {"i": i}} for i in range(40)])
    purged = current_app.control.purge()
    assert purged == FAN_OUT_INLINE + 1  # the first sends and the fan-out message
    assert Run.objects.filter(batch_id=lost.id, status="QUEUED").count() == 40 - FAN_OUT_INLINE
    own.worker()
    own.beat()  # the pump claims what is ready; the purged DEQUEUED ones come back by lease
    for h in lost.runs[FAN_OUT_INLINE:]:
        assert finished(h).status == "COMPLETED"


def test_a_batch_made_again_under_its_id_finds_its_runs_instead_of_making_more(live):
    # What a wait's replay does: the batch id is fixed by (parent run, step).
    from trigger_celery.engine.batches import create_batch

    def items():  # type: ignore[no-untyped-def]
        for i in range(4):
            options = {"idempotency_key": "keyed-item"} if i == 3 else {}
            yield "echo", None, False, {"i": i}, options

    first = create_batch(items(), {}, batch_id="batch_made_twice")
    again = create_batch(items(), {}, batch_id="batch_made_twice")
    assert [h.id for h in again.runs] == [h.id for h in first.runs]
    made = Run.objects.filter(batch_id="batch_made_twice")
    assert sorted(made.values_list("batch_index", flat=True)) == [0, 1, 2, 3]


def test_a_batch_idempotency_key_is_the_batchs_not_every_items(live):
    items = [{"payload": {"n": 1}}, {"payload": {"n": 2}}, {"payload": {"n": 3}, "options": {}}]
    first = echo.batch_trigger(items, idempotency_key="nightly-import")
    assert len({h.id for h in first.runs}) == 3  # three items, three runs
    assert not any(h.is_cached for h in first.runs)
    again = echo.batch_trigger(items, idempotency_key="nightly-import")
    assert [h.id for h in again.runs] == [h.id for h in first.runs]
    assert all(h.is_cached for h in again.runs)
    outputs = [finished(h).output["payload"] for h in first.runs]
    assert outputs == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_a_keyed_batch_again_after_a_failed_item_lists_one_run_per_item(live):
    """The failed item's key was released, so the batch triggered again makes it a new
    run; retrieve lists that one, as the handle does, not both."""
    items = [{"id": "echo", "payload": {}}, {"id": "always-fails", "payload": {}}]
    first = batch.trigger(items, idempotency_key="keyed-retry")
    assert [finished(h).status for h in first.runs] == ["COMPLETED", "FAILED"]
    again = batch.trigger(items, idempotency_key="keyed-retry")
    assert again.id == first.id
    assert again.runs[0].id == first.runs[0].id and again.runs[1].id != first.runs[1].id
    record = batch.retrieve(again.id)
    assert [r.id for r in record.runs] == [h.id for h in again.runs]
    assert record.run_count == 2


def test_a_keyed_batch_again_with_another_number_of_items_is_refused(live):
    """The items past the first call's end were added to the batch made before, whose
    run_count still said 3 (and with fewer items the handle listed fewer runs)."""
    first = echo.batch_trigger([{"payload": {"n": n}} for n in range(3)], idempotency_key="grow")
    for n in (5, 2):
        with pytest.raises(
            ValueError, match=rf"names batch {first.id} of 3 item\(s\); this call has {n}"
        ):
            echo.batch_trigger([{"payload": {"n": i}} for i in range(n)], idempotency_key="grow")
    record = batch.retrieve(first.id)
    assert len(record.runs) == record.run_count == 3
    assert Run.objects.count() == 3
    again = echo.batch_trigger([{"payload": {"n": n}} for n in range(3)], idempotency_key="grow")
    assert [h.id for h in again.runs] == [h.id for h in first.runs]


def test_retrieve_lists_the_run_each_keyed_item_found_outside_the_batch(live):
    """An item's key found a run triggered alone, another batch's, or an earlier item's:
    the handle lists that run, and retrieve did not (the run is not this batch's)."""
    alone = echo.trigger({"alone": True}, idempotency_key="found-alone")
    other = echo.batch_trigger([{"payload": {}, "options": {"idempotency_key": "found-other"}}])
    keyed = [
        {"payload": {"n": 1}, "options": {"idempotency_key": key}}
        for key in ("found-alone", "found-other", "found-twice", "found-twice")
    ]
    handle = echo.batch_trigger([{"payload": {"n": 0}}, *keyed])
    ids = [h.id for h in handle.runs]
    assert ids[1:3] == [alone.id, other.runs[0].id] and ids[3] == ids[4]
    record = batch.retrieve(handle.id)
    assert [r.id for r in record.runs] == ids
    assert record.run_count == 5


def test_batch_over_1000_items_is_refused_and_creates_nothing(live):
    with pytest.raises(ValueError, match="at most 1000"):
        tasks.batch_trigger("echo", ({"payload": i} for i in range(1001)))
    assert not Run.objects.exists()


def test_batch_trigger_by_id_and_by_task(live):
    mixed = batch.trigger(
        [{"id": "echo", "payload": {"a": 1}}, {"id": "hello-world", "payload": {"message": "m"}}]
    )
    by_task = batch.trigger_by_task([{"task": greet, "payload": {"name": "Lin"}}])
    assert finished(mixed.runs[0]).output["payload"] == {"a": 1}
    assert finished(mixed.runs[1]).output["message"] == "m"
    assert finished(by_task.runs[0]).output["text"] == "hello Lin"
    with pytest.raises(ValueError, match="name"):
        batch.trigger_by_task([{"task": greet, "payload": {}}])
    with pytest.raises(ValueError, match="unknown key"):
        batch.trigger([{"id": "echo", "payload": {}, "delay": "1s"}])


# -- metadata, tags and realtime ------------------------------------------------------------


def test_metadata_and_tags_are_visible_while_the_run_executes(live):
    handle = tasks.trigger("progress", {}, metadata={"source": "test"}, tags=["t"])
    # The tag is the run's last write before it waits for "go": once it shows, all do.
    running = wait_for(
        lambda: "halfway" in (r := runs.retrieve(handle)).tags and r,
        what="the run to reach its halfway point",
    )
    assert running.status == "EXECUTING"
    assert running.metadata == {"source": "test", "progress": 0.5, "steps": ["half"], "count": 2}
    assert running.tags == ["t", "halfway"]
    events.record(f"go:{handle.id}", True)
    done = finished(handle)
    assert done.metadata == {"source": "test", "progress": 1.0, "steps": ["half"]}


def test_subscribe_to_run_yields_each_change_until_final(live):
    handle = tasks.trigger("progress", {}, delay="1s")
    seen = []
    for snapshot in runs.subscribe_to_run(handle):
        seen.append(snapshot)
        if snapshot.metadata.get("progress") == 0.5:
            events.record(f"go:{handle.id}", True)
    statuses = [s.status for s in seen]
    assert statuses[0] == "DELAYED"
    assert "EXECUTING" in statuses
    assert (seen[-1].status, seen[-1].metadata["progress"]) == ("COMPLETED", 1.0)
    assert statuses.index("EXECUTING") < statuses.index("COMPLETED")
    # One snapshot per change: no two consecutive snapshots are the same.
    views = [(s.status, s.metadata, s.tags, s.output) for s in seen]
    assert all(a != b for a, b in itertools.pairwise(views))


def _messages_of_run(handle, *, listen: bool) -> list:
    import redis

    from trigger_celery.engine.realtime import LISTENING_CHECK_SECONDS, channel, listening_channel

    pubsub = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel(handle.id), *([listening_channel()] if listen else []))
    try:
        time.sleep(LISTENING_CHECK_SECONDS)  # every process has looked again by now
        events.record(f"go:{handle.id}", True)
        finished(handle)
        messages = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # get_message gives None for ignored ones
            m = pubsub.get_message(timeout=0.1)
            if m is not None:
                messages.append(m)
    finally:
        pubsub.close()
    return messages


def test_run_changes_are_published_on_the_runs_channel_while_someone_listens(live):
    handle = tasks.trigger("gated", {})
    # The metadata it sets after the go, and its completion: each change was pushed.
    assert len(_messages_of_run(handle, listen=True)) >= 2


def test_nothing_is_published_while_nobody_listens(live):
    # A subscriber that did not join the listening channel hears nothing: no process
    # pays a round trip per change when no one subscribes.
    handle = tasks.trigger("gated", {})
    assert _messages_of_run(handle, listen=False) == []


# -- more idempotency and ttl edge cases --------------------------------------------------------


def test_a_retried_parent_triggers_its_run_scoped_child_once(live):
    parent = tasks.trigger("parent-once", {})
    run = finished(parent)
    assert run.status == "COMPLETED"
    children = events.values(f"children:{parent.id}")
    assert len(children) == 2 and children[0] == children[1] == run.output
    assert Run.objects.filter(task_identifier="echo").count() == 1
    child = runs.retrieve(run.output)
    assert child.parent_id == parent.id and child.root_id == parent.id and child.depth == 1


def test_development_environment_runs_get_a_ten_minute_ttl(live):
    from tests import settings as test_settings

    with override_settings(
        TRIGGER_CELERY={**test_settings.TRIGGER_CELERY, "ENVIRONMENT": "DEVELOPMENT"}
    ):
        handle = tasks.trigger("not-deployed-yet", {})
    assert runs.retrieve(handle).ttl == 600
    assert runs.retrieve(tasks.trigger("not-deployed-yet", {})).ttl is None


def test_a_development_ttl_past_ten_years_is_refused_at_trigger_naming_the_setting(live):
    """A web server runs no system checks: the trigger says what is wrong (it failed
    with OverflowError), and writes nothing."""
    config = {**settings.TRIGGER_CELERY, "ENVIRONMENT": "DEVELOPMENT", "DEVELOPMENT_TTL": 10**12}
    with (
        override_settings(TRIGGER_CELERY=config),
        pytest.raises(ImproperlyConfigured, match=r"'DEVELOPMENT_TTL'\] is 1000000000000; "),
    ):
        tasks.trigger("not-deployed-yet", {})
    assert not Run.objects.exists()


def test_a_started_run_waiting_for_its_retry_never_expires(live):
    handle = tasks.trigger("flaky", {"succeed_on": 2}, ttl="1s")
    run = finished(handle, timeout=30)
    assert run.status == "COMPLETED" and run.attempt_count == 2


def test_one_idempotency_key_with_other_debounce_keys_at_once_is_one_run(live):
    """Idempotency wins over debounce: the triggers that lose the key's INSERT get the
    run that holds it (they said "debounce key ... is too contended")."""
    handles, errors = herd(
        20,
        lambda i: tasks.trigger(
            "echo", {"i": i}, idempotency_key="one-key", debounce={"key": f"d{i}", "delay": "1s"}
        ),
    )
    assert errors == []
    assert len({h.id for h in handles}) == 1
    assert sum(not h.is_cached for h in handles) == 1


def test_a_key_released_between_a_lost_insert_and_its_lookup_is_taken(live, monkeypatch):
    """The interleaving of a herd, made exact: the lookup finds no holder, another
    trigger's run takes the key before this INSERT, then fails and releases it before
    this trigger looks for the holder. The key is free: the trigger takes it (a raw
    IntegrityError before)."""
    from trigger_celery.engine import triggering

    real = triggering.find_cached
    calls = []

    def interleaved(environment, task_id, key, now):
        calls.append(key)
        if len(calls) == 1:  # the other trigger's run takes the key now
            Run.objects.create(id="run_holder", task_identifier="echo", environment=environment,
                               max_attempts=1, idempotency_key=key)  # fmt: skip
            return None
        if len(calls) == 2:  # ... and fails, which releases it
            Run.objects.filter(id="run_holder").update(status="FAILED", idempotency_key=None)
        return real(environment, task_id, key, now)

    monkeypatch.setattr(triggering, "find_cached", interleaved)
    handle = tasks.trigger("echo", {}, idempotency_key="released-meanwhile")
    assert not handle.is_cached and handle.id != "run_holder"
    assert Run.objects.get(id=handle.id).idempotency_key is not None
