"""Strings the database cannot store: a NUL character (PostgreSQL's text and jsonb refuse
it) or a lone surrogate (not UTF-8). A trigger refuses them before anything is written,
naming where they are, on every database alike; inside a run, an output with one fails
the attempt like any unserializable output, and log lines and errors keep them escaped.
"""

from __future__ import annotations

from typing import Any

import pytest
from celery import current_app
from django.db import DataError
from django.urls import reverse

from tests.taskapp import events, scheduled  # noqa: F401  (defines the schedules.task tasks)
from trigger_celery import batch, runs, schedules, tasks
from trigger_celery.coordination.factory import get_store
from trigger_celery.engine import transitions
from trigger_celery.errors import (
    InvalidScheduleError,
    RunNotFoundError,
    ScheduleNotFoundError,
    SerializationError,
)
from trigger_celery.models import BulkAction, LogEntry, Run, Schedule
from trigger_celery.worker.attempt import execute

NUL_OPTIONS = [
    ("tags", ["a\x00"], "tags: 'a\\x00' contains a NUL character"),
    ("metadata", {"v": "a\x00"}, "metadata['v'] contains a NUL character"),
    ("metadata", {"k\x00": 1}, "metadata has a key 'k\\x00' that contains a NUL character"),
    ("idempotency_key", "k\x00", "idempotency_key: 'k\\x00' contains a NUL character"),
    ("concurrency_key", "c\x00", "concurrency_key: 'c\\x00' contains a NUL character"),
    ("region", "r\x00", "region: 'r\\x00' contains a NUL character"),
    ("debounce", {"key": "d\x00", "delay": "5s"}, "debounce.key: 'd\\x00' contains a NUL"),
    ("tags", ["\ud800"], "tags: '\\ud800' contains a lone surrogate"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"s": "a\x00b"}, "payload['s'] contains a NUL character"),
        ({"s": ["\ud800"]}, "payload['s'][0] contains a lone surrogate ('\\ud800')"),
        ({"k\x00": 1}, "payload has a key 'k\\x00' that contains a NUL character"),
    ],
)
def test_a_payload_string_the_database_cannot_store_is_refused_naming_its_path(payload, message):
    with pytest.raises(SerializationError) as info:
        tasks.trigger("hello-world", payload)
    assert message in str(info.value)
    with pytest.raises(SerializationError):
        batch.trigger(
            [{"id": "hello-world", "payload": {"ok": 1}}, {"id": "x", "payload": payload}]
        )
    assert not Run.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("option", "value", "message"), NUL_OPTIONS)
def test_an_option_string_the_database_cannot_store_is_refused(option, value, message):
    with pytest.raises(ValueError) as info:
        tasks.trigger("hello-world", {"ok": 1}, **{option: value})
    assert message in str(info.value)
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_a_payload_nested_too_deep_is_refused_naming_the_limit():
    deep: list[Any] = []
    inner = deep
    for _ in range(5000):
        inner.append([])
        inner = inner[0]
    with pytest.raises(SerializationError, match="payload is nested too deep: more than 200"):
        tasks.trigger("hello-world", deep)
    assert not Run.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("task_id", "message"),
    [
        (" ", "task id must be a non-empty string of at most 255 characters, got ' '"),
        ("x" * 300, "task id must be a non-empty string of at most 255 characters, got 'xxx"),
        ("a\x00b", "task id 'a\\x00b' contains a NUL character"),
    ],
)
def test_a_trigger_by_id_applies_the_task_id_rule_of_task(task_id, message):
    with pytest.raises(ValueError) as info:
        tasks.trigger(task_id, {})
    assert message in str(info.value)
    with pytest.raises(ValueError, match="batch item 0: task id"):
        batch.trigger([{"id": task_id, "payload": {}}])
    with pytest.raises(ValueError, match="batch item 0: task id"):
        tasks.batch_trigger(task_id, [{"payload": {}}])
    assert not Run.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["deduplication_key", "external_id"])
def test_a_schedule_key_the_database_cannot_store_is_refused(field):
    args = {"deduplication_key": "k", "external_id": "e", field: "a\x00b"}
    with pytest.raises(InvalidScheduleError, match=f"{field} 'a\\\\x00b' contains a NUL"):
        schedules.create(task="sched-record", cron="0 * * * *", **args)
    assert not Schedule.objects.exists()


@pytest.mark.django_db
def test_the_runs_api_answers_a_nul_character_or_a_wrong_type_clearly():
    with pytest.raises(RunNotFoundError, match="no run with id"):
        runs.retrieve("run_\x00")
    for name in ("tag", "task_identifier"):
        with pytest.raises(ValueError, match=f"runs.list {name}=: 'a\\\\x00' contains a NUL"):
            runs.list(**{name: "a\x00"})
        with pytest.raises(TypeError, match=f"runs.list {name}= must be a string or a list"):
            runs.list(**{name: 5})
        with pytest.raises(TypeError, match=f"runs.list {name}= must be a string or a list"):
            runs.list(**{name: ["ok", 5]})
    assert list(runs.list(tag=("a", "b"), task_identifier=["hello-world"])) == []


@pytest.mark.django_db
def test_the_schedules_api_answers_a_nul_character_or_a_wrong_type_clearly():
    for name in ("task", "external_id"):
        with pytest.raises(ValueError, match=f"schedules.list {name}=: 'a\\\\x00' contains a NUL"):
            schedules.list(**{name: "a\x00"})
        with pytest.raises(TypeError, match=f"schedules.list {name}= must be a string"):
            schedules.list(**{name: 5})
    with pytest.raises(TypeError, match=r"schedules.list task= must be a string or a list"):
        schedules.list(task=["sched-record", 5])
    with pytest.raises(ValueError, match=r"schedules.list task=: '\\ud800' contains a lone"):
        schedules.list(task=["sched-record", "\ud800"])
    assert list(schedules.list(task=("sched-record",), external_id="e")) == []
    for call in (schedules.retrieve, schedules.activate, schedules.delete):
        with pytest.raises(ScheduleNotFoundError, match="no schedule with id"):
            call("sched_\x00")
    with pytest.raises(RunNotFoundError, match="no batch with id"):
        batch.retrieve("batch_\x00")


@pytest.mark.django_db
def test_a_page_cursor_with_a_nul_character_is_refused_naming_it():
    for api in (runs, schedules):
        with pytest.raises(ValueError, match="after: 'a\\\\x00' contains a NUL character"):
            api.list(after="a\x00")


@pytest.mark.django_db
def test_a_page_cursor_that_is_not_one_is_refused_naming_it():
    # Before, 5 and "garbage" gave an empty page, and "zzz" the first page again.
    for api in (runs, schedules):
        with pytest.raises(ValueError, match="after: 5 is not a cursor"):
            api.list(after=5)
    for cursor in ("garbage", "zzz", "sched_x"):
        with pytest.raises(ValueError, match=f"after: '{cursor}' is not a run id"):
            runs.list(after=cursor)
    assert runs.list(after="").data == []  # "": no cursor given (and no run here)
    assert runs.list(after="run_0").data == []  # a run id: a cursor like any other


# -- inside a run: this process runs the attempt (no worker) ------------------------------


def executed(do: str) -> Run:
    handle = tasks.trigger("bad-strings", {"do": do}, max_attempts=1)
    current_app.control.purge()  # no worker here: this process runs the attempt
    assert Run.objects.get(id=handle.id).status == "DEQUEUED"  # it holds its slot
    execute(handle.id, 1, worker="test")
    return Run.objects.get(id=handle.id)


@pytest.mark.integration
def test_an_output_with_a_nul_character_fails_the_attempt_as_unserializable(fresh_store):
    run = executed("output")
    assert run.status == "FAILED"
    assert run.error["type"] == "SerializationError"
    assert "output['out'] contains a NUL character" in run.error["message"]
    assert run.attempts.get().status == "FAILED"
    assert events.values(f"attempts:{run.id}") == [1]


@pytest.mark.integration
def test_metadata_set_with_a_nul_character_is_a_clear_error(fresh_store):
    run = executed("metadata")
    assert run.status == "COMPLETED"
    assert "metadata['x'] contains a NUL character" in run.output
    assert run.metadata == {}


@pytest.mark.integration
def test_metadata_increment_by_what_is_not_a_number_is_a_clear_error(fresh_store):
    run = executed("increment")
    assert run.status == "COMPLETED"
    assert run.output == [
        f"metadata.{call}('n'): amount {amount} is not a finite number"
        for amount in ("'5'", "True", "nan", "None")
        for call in ("increment", "decrement")
    ]
    assert run.metadata == {"n": 1.5}


@pytest.mark.integration
def test_a_log_line_with_a_nul_character_is_stored_escaped(fresh_store):
    run = executed("log")
    assert run.status == "COMPLETED" and run.output == "logged"
    line = LogEntry.objects.get(run_id=run.id)
    assert line.message == "a\\x00b\\ud800"
    assert line.attributes == {"note": "c\\x00d", "k\\x00": ["\\ud800"]}


@pytest.mark.integration
def test_a_log_attribute_too_deep_even_for_repr_is_a_note_naming_it(fresh_store):
    run = executed("deep-log")
    assert run.status == "COMPLETED" and run.output == "logged"
    line = LogEntry.objects.get(run_id=run.id)
    assert line.message == "deep"
    assert line.attributes["ok"] == 1
    assert line.attributes["broken"] == (
        "<log attribute 'broken': _Unshowable not shown (RecursionError)>"
    )
    # Too deep for JSON: its repr (Python 3.12 and later) or, when repr gives up as
    # well (3.11), the note.
    deep = line.attributes["deep"]
    assert (
        deep.startswith("[[[") or deep == "<log attribute 'deep': list not shown (RecursionError)>"
    )


@pytest.mark.integration
def test_an_error_with_a_nul_character_is_recorded_escaped(fresh_store):
    run = executed("raise")
    assert run.status == "FAILED"
    assert (run.error["type"], run.error["message"]) == ("ValueError", "a\\x00b")
    assert "\x00" not in run.error["stack"]
    assert run.attempts.get().error["message"] == "a\\x00b"


@pytest.mark.integration
def test_a_final_write_the_database_refuses_for_good_ends_the_attempt_at_once(
    fresh_store, monkeypatch
):
    """A permanent database error (not an outage) on the last write: the run ends
    SYSTEM_FAILURE with that error, instead of staying EXECUTING until its lease lapses
    and the code runs again."""

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise DataError("value too long for type character varying(255)")

    monkeypatch.setattr(transitions, "complete", refused)
    run = executed("metadata")
    assert run.status == "SYSTEM_FAILURE"
    assert run.error["type"] == "DataError" and "value too long" in run.error["message"]
    assert run.error["code"] == "OUTCOME_NOT_RECORDED"
    assert run.attempts.get().status == "FAILED"
    assert run.id not in get_store().holding_run_ids()  # its slot went back


# -- the dashboard ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"payload": '{"x": "a\\u0000b"}'}, "payload[&#x27;x&#x27;] contains a NUL character"),
        ({"metadata": '{"a": "\\u0000"}'}, "metadata[&#x27;a&#x27;] contains a NUL character"),
        ({"tags": "a\x00"}, "Null characters are not allowed"),  # Django's own check
    ],
)
def test_the_test_page_refuses_a_nul_character_with_a_message(admin_client, fields, message):
    form = {"task": "hello-world", "payload": '{"message": "hi"}', **fields}
    response = admin_client.post(reverse("trigger_celery:test"), form)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Run.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"x": "a\\u0000b"}', "payload[&#x27;x&#x27;] contains a NUL character"),
        ('{"x": NaN}', "payload[&#x27;x&#x27;] is nan"),
        ("[Infinity]", "payload[0] is inf"),
    ],
)
def test_a_replay_with_a_payload_that_cannot_be_stored_is_refused_with_a_message(
    admin_client, payload, message
):
    original = tasks.trigger("hello-world", {"message": "hi"})
    url = reverse("trigger_celery:run-replay", args=[original.id])
    response = admin_client.post(url, {"payload": payload}, follow=True)
    assert response.status_code == 200  # back on the run's page, as for a payload not JSON
    assert "Not replayed" in response.content.decode()
    assert message in response.content.decode()
    assert not Run.objects.filter(replayed_from_id=original.id).exists()


@pytest.mark.django_db
def test_a_nul_character_in_a_filter_or_a_run_url_is_a_bad_request(admin_client):
    for query in ("tag=%00", "task=a%00", "queue=%00"):
        page = admin_client.get(reverse("trigger_celery:run-list") + "?" + query)
        assert page.status_code == 400
        assert "contains a NUL character" in page.content.decode()
        listed = admin_client.get(reverse("trigger_celery:run-list-json") + "?" + query)
        assert listed.status_code == 400 and listed.json()["runs"] == []
    for name, method in (("run-detail", "get"), ("run-detail-json", "get"), ("run-replay", "post")):
        url = reverse(f"trigger_celery:{name}", args=["run_\x00"])
        assert "%00" in url
        assert getattr(admin_client, method)(url).status_code == 404


@pytest.mark.django_db
def test_a_nul_character_in_a_page_cursor_is_a_bad_request(admin_client):
    page = admin_client.get(reverse("trigger_celery:run-list") + "?after=a%00")
    assert page.status_code == 400
    assert "after: &#x27;a\\x00&#x27; contains a NUL character" in page.content.decode()
    listed = admin_client.get(reverse("trigger_celery:run-list-json") + "?after=a%00")
    assert listed.status_code == 400 and listed.json()["runs"] == []
    assert "contains a NUL character" in listed.json()["errors"][0]


@pytest.mark.django_db
def test_a_nul_character_in_a_schedule_filter_or_url_is_refused(admin_client):
    schedules.create(task="sched-record", cron="0 * * * *", deduplication_key="k")
    for query, name in (
        ("task=a%00", "task"),
        ("after=%00", "after"),
        ("task=x&after=b%00", "after"),
    ):
        page = admin_client.get(reverse("trigger_celery:schedule-list") + "?" + query)
        assert page.status_code == 400
        assert f"{name}: &#x27;" in page.content.decode()
        assert "contains a NUL character" in page.content.decode()
    assert admin_client.get(reverse("trigger_celery:schedule-list")).status_code == 200
    detail = reverse("trigger_celery:schedule-detail", args=["sched_\x00"])
    assert "%00" in detail
    assert admin_client.get(detail).status_code == 404
    assert admin_client.post(detail, {"cron": "0 * * * *"}).status_code == 404
    for action in ("activate", "deactivate", "delete"):
        url = reverse("trigger_celery:schedule-action", args=["sched_\x00", action])
        assert admin_client.post(url).status_code == 404
    assert Schedule.objects.count() == 1


@pytest.mark.django_db
def test_a_bulk_action_on_a_run_id_with_a_nul_character_is_refused_naming_it(admin_client):
    run = tasks.trigger("hello-world", {"message": "hi"})
    url = reverse("trigger_celery:bulk-new")
    for method in (admin_client.get, admin_client.post):
        response = method(url, {"action": "cancel", "run": [run.id, "run_\x00"]})
        assert response.status_code == 400
        assert "run: &#x27;run_\\x00&#x27; contains a NUL character" in response.content.decode()
    everything = admin_client.get(url, {"action": "cancel", "scope": "filter", "filter": "tag=%00"})
    assert everything.status_code == 400
    assert "contains a NUL character" in everything.content.decode()
    assert not BulkAction.objects.exists()
    assert Run.objects.get(id=run.id).status != "CANCELED"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "query"),
    [
        ("run", "status__exact=%00"),
        ("run", "task=%00"),
        ("attempt", "status__exact=%00"),
        ("schedule", "timezone=a%00"),
        ("schedule", "task_identifier__exact=%00"),
    ],
)
def test_the_admin_answers_a_nul_character_in_a_filter_as_a_bad_lookup(admin_client, model, query):
    url = reverse(f"admin:trigger_celery_{model}_changelist")
    response = admin_client.get(url + "?" + query)
    assert response.status_code == 302 and response["Location"] == url + "?e=1"


@pytest.mark.django_db
def test_the_admin_answers_a_nul_character_in_an_object_id_or_a_selection(admin_client):
    for model in ("run", "batch", "queuestate", "schedule"):
        url = reverse(f"admin:trigger_celery_{model}_change", args=["a\x00"])
        response = admin_client.get(url, follow=True)
        assert response.status_code == 200
        assert "Perhaps it was deleted?" in response.content.decode()
    run = tasks.trigger("hello-world", {"message": "hi"})
    response = admin_client.post(
        reverse("admin:trigger_celery_run_changelist"),
        {"action": "cancel_runs", "_selected_action": [run.id, "run_\x00"]},
    )
    assert response.status_code == 302
    assert Run.objects.get(id=run.id).status != "CANCELED"
