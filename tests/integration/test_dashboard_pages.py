"""Dashboard pages through Django's test client: filters, actions, test page, admin."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.utils import quote
from django.core.files.storage import FileSystemStorage
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.taskapp import scheduled  # noqa: F401  (defines the schedules.task tasks)
from trigger_celery import runs
from trigger_celery.core.ids import ID_CLOCK_SLACK, new_id
from trigger_celery.engine.payloads import discard_payload, load_payload, store_payload
from trigger_celery.models import Run
from trigger_celery.views.tasks import percentile

pytestmark = pytest.mark.django_db

LIST = reverse("trigger_celery:run-list")
LIST_JSON = reverse("trigger_celery:run-list-json")


def make_run(run_id: str, status: str = "COMPLETED", **fields) -> Run:
    defaults = {
        "task_identifier": "hello-world",
        "status": status,
        "environment": "PRODUCTION",
        "queue": "hello-world",
        "max_attempts": 3,
        "payload": {"message": "hi"},
    }
    defaults.update(fields)
    return Run.objects.create(id=run_id, **defaults)


def ids_in(client: Client, query: str) -> list[str]:
    body = client.get(LIST_JSON + "?" + query).json()
    return [r["id"] for r in body["runs"]]


def test_list_filters_like_runs_list(admin_client):
    make_run("run_f1", "COMPLETED", tags=["vip", "eu"], queue="q-a")
    make_run("run_f2", "FAILED", tags=["vip"], concurrency_key="tenant-1")
    make_run("run_f3", "QUEUED", task_identifier="greet", idempotency_key="key-123")
    make_run("run_f4", "CANCELED", schedule_id=None)
    assert ids_in(admin_client, "status=COMPLETED&status=FAILED") == ["run_f2", "run_f1"]
    assert ids_in(admin_client, "tag=vip") == ["run_f2", "run_f1"]
    assert ids_in(admin_client, "tag=vip&status=FAILED") == ["run_f2"]
    assert ids_in(admin_client, "queue=q-a") == ["run_f1"]
    assert ids_in(admin_client, "concurrency_key=tenant-1") == ["run_f2"]
    assert ids_in(admin_client, "task=greet") == ["run_f3"]
    assert ids_in(admin_client, "task_identifier=greet") == ["run_f3"]  # runs.list's name
    assert ids_in(admin_client, "q=key-123") == ["run_f3"]
    assert ids_in(admin_client, "q=run_f4") == ["run_f4"]
    # A run's id begins with its creation time, as new_id makes it.
    three_days_ago = timezone.now() - timedelta(days=3)
    old = make_run(new_id("run", at=three_days_ago), tags=["vip"])
    Run.objects.filter(id=old.id).update(created_at=three_days_ago)
    day = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%d")
    assert old.id not in ids_in(admin_client, f"created_from={day}")
    assert ids_in(admin_client, f"created_to={day}") == [old.id]
    assert ids_in(admin_client, f"to={day}") == [old.id]
    fresh = make_run(new_id("run"))
    today = timezone.localtime().strftime("%Y-%m-%d")  # a "to" date includes its day
    assert ids_in(admin_client, f"created_from={today}&created_to={today}") == [fresh.id]
    # The first and last days there are bound nothing (they answered 500).
    everything = set(ids_in(admin_client, ""))
    for edge in ("created_from=0001-01-01", "created_to=9999-12-31", "to=9999-12-31T23:59"):
        assert set(ids_in(admin_client, edge)) == everything, edge
    for url in (
        LIST_JSON + "?created_from=0001-01-01",
        reverse("trigger_celery:bulk-new")
        + "?action=cancel&scope=filter&filter=created_from%3D0001-01-01",
    ):
        assert admin_client.get(url).status_code == 200, url
    # East of UTC the first day begins before the first instant there is in UTC, west of
    # it the last day ends after the last: they still bound nothing, and are no error
    # ("'0001-01-01' is not a date or date and time").
    for zone in ("Europe/Berlin", "America/New_York"):
        with override_settings(TIME_ZONE=zone):
            for edge in ("created_from=0001-01-01", "created_to=9999-12-31"):
                body = admin_client.get(LIST_JSON + "?" + edge).json()
                assert body["errors"] == [], (zone, edge)
                assert {r["id"] for r in body["runs"]} == everything, (zone, edge)


def test_a_date_range_finds_runs_by_created_at_though_their_id_time_is_a_little_off(
    admin_client,
):
    start = timezone.now().replace(microsecond=0) - timedelta(days=5)
    end = start + timedelta(days=1)
    second = timedelta(seconds=1)
    slack = ID_CLOCK_SLACK - second  # how far off an id's time may be and still be found

    def run_at(id_time, created_at) -> str:
        run = make_run(new_id("run", at=id_time))
        Run.objects.filter(id=run.id).update(created_at=created_at)
        return run.id

    # The id made before the row was saved; made after the clock stepped back.
    saved_late = run_at(start - slack, start)
    clock_back = run_at(end + slack, end - second)
    inside = run_at(start + timedelta(hours=1), start + timedelta(hours=1))
    # Created outside the range, whatever its id says.
    run_at(start + second, start - second)
    run_at(end - second, end)
    run_at(start - slack, start - slack)
    run_at(end + slack, end + slack)
    found = [clock_back, inside, saved_late]
    assert sorted(found, reverse=True) == found  # newest id first, like every page
    query = f"created_from={start.isoformat()}&created_to={end.isoformat()}".replace("+", "%2B")
    assert ids_in(admin_client, query) == found
    assert [r.id for r in runs.list(from_=start, to=end, limit=100).data] == found
    naive = start.astimezone(UTC).replace(tzinfo=None)  # naive is UTC, a date its midnight
    assert (
        runs.list(from_=naive, to=end, limit=100).data
        == runs.list(from_=start, to=end, limit=100).data
    )
    assert runs.list(from_=start.date(), limit=1).data is not None
    for bad in ("2026-12-01", 5):
        with pytest.raises(ValueError, match=f"from_= must be a datetime or a date, got {bad!r}"):
            runs.list(from_=bad)


def test_the_search_finds_a_run_by_the_idempotency_key_given_to_its_trigger(admin_client):
    """The key is stored hashed: the search hashes what it is given the same way."""
    from trigger_celery.core.idempotency import hash_key

    make_run("run_keyed", "QUEUED", idempotency_key=hash_key("order-9"))
    make_run("run_other_key", "QUEUED", idempotency_key=hash_key("order-10"))
    make_run("run_long_key", "QUEUED", idempotency_key=hash_key("z" * 300))
    assert ids_in(admin_client, "q=order-9") == ["run_keyed"]
    assert ids_in(admin_client, "q=" + hash_key("order-9")) == ["run_keyed"]
    assert ids_in(admin_client, "q=" + "z" * 300) == ["run_long_key"]  # keys up to 2,048
    admin_page = admin_client.get(reverse("admin:trigger_celery_run_changelist") + "?q=order-9")
    assert "run_keyed" in admin_page.content.decode()
    assert "run_other_key" not in admin_page.content.decode()


def test_a_bad_filter_value_is_named_and_matches_nothing(admin_client):
    make_run("run_bad_filter")
    body = admin_client.get(LIST_JSON + "?created_from=yesterday&status=NOPE").json()
    assert body["runs"] == []
    assert any("'yesterday'" in e for e in body["errors"])
    assert any("'NOPE'" in e for e in body["errors"])
    page = admin_client.get(LIST + "?created_from=yesterday").content.decode()
    assert "&#x27;yesterday&#x27; is not a date" in page


def test_a_filter_with_an_unreadable_status_stays_unreadable_when_carried_on(admin_client):
    """The page's polling and its bulk form carry the filter on: an unreadable status must
    keep matching nothing there too, never every run."""
    for i in range(3):
        make_run(f"run_carried_{i}", "QUEUED")
    page = admin_client.get(LIST + "?status=failed")
    carried = page.context["query"]
    assert "status=failed" in carried
    assert ids_in(admin_client, carried) == []
    url = reverse("trigger_celery:bulk-new")
    confirm = admin_client.get(url, {"action": "cancel", "scope": "filter", "filter": carried})
    assert "unknown status &#x27;failed&#x27;" in confirm.content.decode()
    assert "Cancel 3 runs?" not in confirm.content.decode()
    done = admin_client.post(url, {"action": "cancel", "scope": "filter", "filter": carried})
    assert done.status_code == 200  # the problem again, nothing created
    assert set(Run.objects.values_list("status", flat=True)) == {"QUEUED"}


def test_list_pages_by_keyset_and_json_never_returns_more_than_a_page(admin_client):
    for i in range(120):
        make_run(f"run_page_{i:03d}", tags=["paged"])
    body = admin_client.get(LIST_JSON + "?tag=paged").json()
    assert len(body["runs"]) == 50 and body["next"] == "run_page_070"
    make_run("run_page_999", tags=["paged"])  # an insert does not shift the next page
    second = admin_client.get(LIST_JSON + "?tag=paged&after=" + body["next"]).json()
    assert [r["id"] for r in second["runs"]][:2] == ["run_page_069", "run_page_068"]
    page = admin_client.get(LIST + "?tag=paged").content.decode()
    assert "after=run_page_071" in page or "after=run_page_070" in page


def test_list_shows_duration_tags_and_the_live_endpoint(admin_client):
    start = timezone.now() - timedelta(seconds=90)
    make_run("run_cols", started_at=start, finished_at=start + timedelta(seconds=2.5), tags=["t1"])
    row = admin_client.get(LIST_JSON).json()["runs"][0]
    assert row["duration"] == "2.5 s" and row["tags"] == ["t1"]
    page = admin_client.get(LIST).content.decode()
    assert 'id="tc-live" type="application/json"' in page
    assert "<script>" not in page.replace('<script id="tc-live" type="application/json">', "")


def test_replay_with_an_edited_payload_links_the_new_run(admin_client):
    original = make_run("run_orig", payload={"message": "old"})
    response = admin_client.post(
        reverse("trigger_celery:run-replay", args=[original.id]),
        {"payload": '{"message": "edited"}'},
    )
    new = Run.objects.get(replayed_from_id=original.id)
    assert response["Location"] == reverse("trigger_celery:run-detail", args=[new.id])
    assert new.payload == {"message": "edited"}
    detail = admin_client.get(reverse("trigger_celery:run-detail", args=[original.id]))
    assert new.id in detail.content.decode()
    # A payload field left empty (or left out) replays the original's payload, not null.
    for form in ({"payload": "  "}, {}):
        admin_client.post(reverse("trigger_celery:run-replay", args=[original.id]), form)
    again = Run.objects.filter(replayed_from_id=original.id).exclude(id=new.id)
    assert [r.payload for r in again] == [{"message": "old"}] * 2


def test_a_nested_inline_payload_fills_the_replay_box_and_test_page_with_what_a_form_sends(
    admin_client, settings
):
    """Indented, a 420 KB nested payload was 2.7 MB of text: the replay box and the test
    page were filled with more than Django accepts back (DATA_UPLOAD_MAX_MEMORY_SIZE),
    and sending it unchanged was a bare 400."""
    payload = {"rows": [[[1]]] * 70000, "name": "ünï <b>"}
    assert len(json.dumps(payload, indent=2)) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    original = make_run("run_nested", payload=payload)
    assert original.payload_ref == ""  # inline: within the inline limit
    page = admin_client.get(reverse("trigger_celery:run-detail", args=[original.id]))
    assert b'data-fill-from="tc-payload"' in page.content
    shown = re.search(r'<pre id="tc-payload">(.*?)</pre>', page.content.decode(), re.S)
    text = html.unescape(shown.group(1))
    assert len(text) < settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 2 and json.loads(text) == payload
    assert "ünï &lt;b&gt;" in shown.group(1)  # escaped, not \\u-escaped
    answer = admin_client.post(
        reverse("trigger_celery:run-replay", args=[original.id]), {"payload": text}
    )
    assert answer.status_code == 302
    assert Run.objects.get(replayed_from_id=original.id).payload == payload
    # The test page fills its box from the latest run of the task, the same way.
    test_page = admin_client.get(reverse("trigger_celery:test") + "?task=hello-world")
    box = re.search(r"<textarea[^>]*>(.*?)</textarea>", test_page.content.decode(), re.S)
    assert json.loads(html.unescape(box.group(1))) == payload
    assert "ünï" in box.group(1)


def test_replay_with_bad_json_or_a_bad_schema_payload_creates_nothing(admin_client):
    original = make_run("run_orig2", task_identifier="greet", payload={"name": "x"})
    url = reverse("trigger_celery:run-replay", args=[original.id])
    response = admin_client.post(url, {"payload": "{not json"}, follow=True)
    assert "the payload is not JSON" in response.content.decode()
    response = admin_client.post(url, {"payload": '{"count": 2}'}, follow=True)
    assert "does not fit the schema" in response.content.decode()
    assert not Run.objects.filter(replayed_from_id=original.id).exists()


def test_a_refused_replay_gives_the_edited_payload_back_to_edit_again(admin_client):
    """The page opens the replay box with what was typed, not the original payload (an
    audit retyped its edit after a typo); once only, and escaped."""
    original = make_run("run_draft", task_identifier="greet", payload={"name": "x"})
    url = reverse("trigger_celery:run-replay", args=[original.id])
    typed = '{"name": "<b>Eve</b>", "count": "lots"}'
    page = admin_client.post(url, {"payload": typed}, follow=True).content.decode()
    assert "does not fit the schema" in page
    assert "<details open><summary>Replay" in page
    assert (
        "&quot;&lt;b&gt;Eve&lt;/b&gt;&quot;, &quot;count&quot;: &quot;lots&quot;}</textarea>"
        in page
    )
    again = admin_client.get(reverse("trigger_celery:run-detail", args=[original.id]))
    assert "<details><summary>Replay" in again.content.decode()
    assert "lots" not in again.content.decode()


@pytest.mark.parametrize(
    "ref",
    [
        "trigger-celery-payloads/../tc-secret.py",
        "tc-secret.py",
        "trigger-celery-payloads/x/../../tc-secret.py",
        "/tc-secret.py",
        "trigger-celery-payloads/run_x/payload.json/../../../tc-secret.py",
    ],
)
def test_a_stored_value_named_outside_what_the_package_writes_is_never_read_or_deleted(
    admin_client, settings, tmp_path, ref
):
    """A run row is data: one written in SQL to name another file of the storage
    (settings.py beside a relative storage's anchor) had it shown on the run page, and a
    debounce's discard deleted what it named."""
    settings.MEDIA_ROOT = str(tmp_path)
    secret = tmp_path / "tc-secret.py"
    secret.write_text("SECRET_KEY = 'not-for-the-dashboard'\n")
    run = make_run("run_prefix", payload=None, payload_ref=ref)
    page = admin_client.get(reverse("trigger_celery:run-detail", args=[run.id]))
    assert page.status_code == 200
    assert "not-for-the-dashboard" not in page.content.decode()
    assert "is not a name this package gives one" in html.unescape(page.content.decode())
    discard_payload(ref)
    assert secret.exists()
    with pytest.raises(ValueError, match="is not a name this package gives one"):
        load_payload(None, ref)
    # What the package writes is read as ever, under today's prefix or an earlier one.
    big = {"blob": "x" * 600_000}  # past the inline limit: stored
    _inline, kept = store_payload("run_prefix", "payload", big, limit=10**7)
    assert kept.startswith("trigger-celery-payloads/run_prefix/payload")
    assert load_payload(None, kept) == big
    earlier = "old-prefix/run_prefix/payload_AbC1234.json"
    with pytest.raises(FileNotFoundError):  # the name is taken; there is no such file
        load_payload(None, earlier)


def test_a_small_stored_value_that_is_not_json_is_said_to_be_so(admin_client, settings, tmp_path):
    """It was said to be "larger than 512 KB" and cut."""
    settings.MEDIA_ROOT = str(tmp_path)
    _inline, ref = store_payload("run_damaged", "payload", {"blob": "x" * 600_000}, limit=10**7)
    (tmp_path / ref).write_text('{"blob": "cut sh')
    make_run("run_damaged", payload=None, payload_ref=ref)
    page = html.unescape(
        admin_client.get(
            reverse("trigger_celery:run-detail", args=["run_damaged"])
        ).content.decode()
    )
    assert f"The payload stored at {ref} is not valid JSON (Unterminated string" in page
    assert "larger than" not in page and '{"blob": "cut sh' in page


class UnreadableStorage(FileSystemStorage):
    """A storage that fails with something other than an OSError (a cloud storage
    client's own error, say) whenever a stored value is opened."""

    def open(self, name, mode="rb"):
        raise RuntimeError(f"the bucket refused {name}")


def test_replay_of_a_payload_storage_cannot_give_back_says_so_instead_of_a_500(
    admin_client, settings
):
    ref = "trigger-celery-payloads/run_unreadable/payload.json"
    original = make_run("run_unreadable", payload=None, payload_ref=ref)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": f"{__name__}.UnreadableStorage"},
    }
    detail = admin_client.get(reverse("trigger_celery:run-detail", args=[original.id]))
    assert "the bucket refused" in detail.content.decode()  # the page shows, and says why
    url = reverse("trigger_celery:run-replay", args=[original.id])
    for form in ({"payload": ""}, {}):
        response = admin_client.post(url, form, follow=True)
        assert response.status_code == 200
        assert response.redirect_chain[-1][0] == reverse(
            "trigger_celery:run-detail", args=[original.id]
        )
        assert (
            f"Not replayed: its payload could not be read (stored at {ref}): "
            f"RuntimeError: the bucket refused {ref}"
        ) in response.content.decode()
    assert not Run.objects.filter(replayed_from_id=original.id).exists()
    # Django admin: its run page and its replay action say so too; the other run selected
    # is replayed all the same.
    admin_page = admin_client.get(reverse("admin:trigger_celery_run_change", args=[original.id]))
    assert admin_page.status_code == 200
    assert f"RuntimeError: the bucket refused {ref}" in admin_page.content.decode()
    readable = make_run("run_readable", payload={"n": 1})
    response = admin_client.post(
        reverse("admin:trigger_celery_run_changelist"),
        {"action": "replay_runs", "_selected_action": [original.id, readable.id]},
        follow=True,
    )
    assert response.status_code == 200
    said = response.content.decode()
    assert "Replayed 1 run(s)" in said
    assert f"Not replayed, 1 run(s): {original.id} (RuntimeError: the bucket refused" in said
    assert Run.objects.filter(replayed_from_id=readable.id).count() == 1
    assert not Run.objects.filter(replayed_from_id=original.id).exists()


def test_reschedule_moves_a_delayed_run_and_refuses_others(admin_client):
    later = timezone.now() + timedelta(hours=5)
    delayed = make_run("run_delayed", "DELAYED", delayed_until=later)
    admin_client.post(reverse("trigger_celery:run-reschedule", args=[delayed.id]), {"delay": "10m"})
    moved = Run.objects.get(id=delayed.id).delayed_until
    assert timedelta(minutes=9) < moved - timezone.now() < timedelta(minutes=11)
    done = make_run("run_done")
    response = admin_client.post(
        reverse("trigger_celery:run-reschedule", args=[done.id]), {"delay": "10m"}, follow=True
    )
    assert "only a DELAYED run can be rescheduled" in response.content.decode()
    response = admin_client.post(
        reverse("trigger_celery:run-reschedule", args=[delayed.id]),
        {"delay": "soonish"},
        follow=True,
    )
    said = "&#x27;soonish&#x27; is not a delay; type a duration such as 30s, 5m or 1h30m"
    assert said in response.content.decode()
    before = timezone.now()
    admin_client.post(reverse("trigger_celery:run-reschedule", args=[delayed.id]), {"delay": "90"})
    after = timezone.now()
    moved = Run.objects.get(id=delayed.id).delayed_until  # a bare number is seconds
    assert before + timedelta(seconds=90) <= moved <= after + timedelta(seconds=90)
    # A time without a zone is the project's, as every time on the page is shown.
    with override_settings(TIME_ZONE="Europe/Paris"):
        admin_client.post(
            reverse("trigger_celery:run-reschedule", args=[delayed.id]),
            {"delay": "2030-01-01T10:00"},
        )
    assert Run.objects.get(id=delayed.id).delayed_until == datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    response = admin_client.post(
        reverse("trigger_celery:run-reschedule", args=[delayed.id]),
        {"delay": "9999-12-31"},
        follow=True,
    )
    # In the form's terms: what was typed, no datetime repr, nothing said twice.
    assert "Not rescheduled: &#x27;9999-12-31&#x27; is more than 10 years away." in (
        response.content.decode()
    )
    response = admin_client.post(
        reverse("trigger_celery:run-reschedule", args=[delayed.id]),
        {"delay": "2020-01-01"},
        follow=True,
    )
    assert "rescheduled (2020-01-01); that date is not in the future, so it starts now." in (
        response.content.decode()
    )


def test_cancel_from_the_page_cancels_a_queued_run(admin_client):
    run = make_run("run_to_cancel", "QUEUED")
    page = admin_client.post(reverse("trigger_celery:run-cancel", args=[run.id]), follow=True)
    assert f'class="msg-success">Run {run.id} is CANCELED.' in page.content.decode()
    assert Run.objects.get(id=run.id).status == "CANCELED"
    page = admin_client.get(reverse("trigger_celery:run-detail", args=[run.id])).content
    assert b'id="tc-cancel"' not in page  # final: no cancel button any more


def test_cancel_from_a_page_older_than_the_runs_end_says_nothing_was_canceled(admin_client):
    run = make_run("run_ended", "COMPLETED")
    page = admin_client.post(reverse("trigger_celery:run-cancel", args=[run.id]), follow=True)
    said = f'class="msg-error">Not canceled: run {run.id} had already ended (COMPLETED).'
    assert said in page.content.decode()
    assert Run.objects.get(id=run.id).status == "COMPLETED"


def test_run_detail_shows_lineage_timeline_logs_and_escapes_everything(admin_client):
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>{{ 7|add:1 }}'
    root = make_run("run_root")
    now = timezone.now()
    run = make_run(
        "run_mid",
        parent_id=root.id,
        root_id=root.id,
        depth=1,
        payload={"x": evil},
        output={"y": evil},
        metadata={"m": evil},
        tags=[evil[:60]],
        error={"type": "ValueError", "message": evil, "stack": evil},
        started_at=now - timedelta(seconds=3),
        finished_at=now,
    )
    run.attempts.create(
        number=1,
        status="FAILED",
        started_at=now - timedelta(seconds=3),
        finished_at=now - timedelta(seconds=2),
    )
    run.attempts.create(
        number=2, status="COMPLETED", started_at=now - timedelta(seconds=1), finished_at=now
    )
    run.logs.create(attempt_number=1, level="INFO", message=evil, attributes={"a": evil})
    Run.objects.filter(id=run.id).update(created_at=now - timedelta(seconds=5))
    make_run("run_child", parent_id=run.id, root_id=root.id, depth=2)
    page = admin_client.get(reverse("trigger_celery:run-detail", args=[run.id])).content.decode()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "{{ 7|add:1 }}" in page  # shown as text, not evaluated
    assert "run_root" in page and "run_child" in page
    assert "{&quot;a&quot;: &quot;&lt;script&gt;" in page  # log attributes as JSON text
    assert page.count('<rect class="executing"') == 2
    assert '<rect class="waiting"' in page  # the retry delay between the attempts


def test_attempt_times_show_their_date_in_the_project_time_zone(admin_client, settings):
    settings.TIME_ZONE = "Asia/Tokyo"  # UTC+9: the attempts below start on the next day there
    run = make_run("run_dated", "EXECUTING")
    start = datetime(2026, 3, 4, 23, 59, 59, 500000, tzinfo=UTC)
    run.attempts.create(
        number=1, status="FAILED", started_at=start, finished_at=start + timedelta(seconds=2)
    )
    run.attempts.create(number=2, status="EXECUTING", started_at=start + timedelta(days=1))
    page = admin_client.get(reverse("trigger_celery:run-detail", args=[run.id])).content.decode()
    table = page[page.index('id="tc-attempt-table"') :]
    table = table[: table.index("</table>")]
    rows = [re.findall(r"<td>([^<]*)</td>", row) for row in table.split("<tr>")[2:]]
    assert [row[1:3] for row in rows] == [
        ["2026-03-05 08:59:59.500000", "2026-03-05 09:00:01.500000"],
        ["2026-03-06 08:59:59.500000", "—"],
    ]


def test_run_json_sends_the_log_lines_after_the_one_given(admin_client):
    run = make_run("run_logs_json", "EXECUTING")
    lines = [
        run.logs.create(attempt_number=1, level="INFO", message=f"line {i}", attributes={"i": i})
        for i in range(3)
    ]
    url = reverse("trigger_celery:run-detail-json", args=[run.id])
    assert "logs" not in admin_client.get(url).json()  # only when asked for
    body = admin_client.get(f"{url}?logs_after={lines[0].id}").json()
    assert [line["message"] for line in body["logs"]] == ["line 1", "line 2"]
    assert body["logs"][0]["attributes"] == '{"i": 1}' and body["logs"][0]["attempt"] == 1
    assert body["status"] == "EXECUTING"
    assert admin_client.get(f"{url}?logs_after={lines[2].id}").json()["logs"] == []
    # The page says where the live lines start: after the last one it shows.
    page = admin_client.get(reverse("trigger_celery:run-detail", args=[run.id])).content.decode()
    assert f'"logs_after": {lines[2].id}' in page
    for bad in ("x1", "-1", "\u00b2", "9" * 40):
        response = admin_client.get(url, {"logs_after": bad})
        assert response.status_code == 400 and repr(bad) in response.json()["errors"][0], bad


def test_the_payload_is_in_the_run_page_once(admin_client):
    run = make_run("run_payload_once", payload={"marker": "only-once-<b>"})
    page = admin_client.get(reverse("trigger_celery:run-detail", args=[run.id])).content.decode()
    assert page.count("only-once-") == 1 and "only-once-&lt;b&gt;" in page


def test_a_dequeued_run_says_which_celery_queue_it_waits_on(admin_client):
    sent = make_run("run_sent", "DEQUEUED", machine="large-1x")
    page = admin_client.get(reverse("trigger_celery:run-detail", args=[sent.id])).content.decode()
    assert "sent to Celery queue <code>machine.large-1x</code>" in page
    plain = make_run("run_sent_plain", "DEQUEUED")
    page = admin_client.get(reverse("trigger_celery:run-detail", args=[plain.id])).content.decode()
    assert "sent to Celery queue <code>celery</code>" in page
    done = make_run("run_done", "COMPLETED", machine="large-1x")
    page = admin_client.get(reverse("trigger_celery:run-detail", args=[done.id])).content.decode()
    assert "sent to Celery queue" not in page


def test_the_timeline_of_a_run_that_never_started_shows_its_wait(admin_client):
    now = timezone.now()
    run = make_run("run_expired", "EXPIRED", finished_at=now, expired_at=now)
    Run.objects.filter(id=run.id).update(created_at=now - timedelta(seconds=10))
    page = admin_client.get(reverse("trigger_celery:run-detail", args=[run.id])).content.decode()
    timeline = page.split("<h2>Timeline</h2>")[1].split("</table>")[0]
    assert "queued, then expired" in timeline and "10.0" in timeline
    assert "Nothing yet." not in timeline


def test_the_timeline_shows_a_wait_inside_an_attempt_as_waiting(admin_client):
    from trigger_celery.models import Waitpoint

    now = timezone.now()
    run = make_run("run_waited", started_at=now - timedelta(seconds=10), finished_at=now)
    Run.objects.filter(id=run.id).update(created_at=now - timedelta(seconds=10))
    run.attempts.create(
        number=1, status="COMPLETED", started_at=now - timedelta(seconds=10), finished_at=now
    )
    wp = Waitpoint.objects.create(
        run=run, step=0, kind="RUN", label="child-task", completed_at=now - timedelta(seconds=2)
    )
    Waitpoint.objects.filter(id=wp.id).update(created_at=now - timedelta(seconds=8))
    page = admin_client.get(reverse("trigger_celery:run-detail", args=[run.id])).content.decode()
    timeline = page.split("<h2>Timeline</h2>")[1].split("</table>")[0]
    rows = [r.split("</td>")[0] for r in timeline.split("<tr><td>")[1:]]
    assert rows == ["attempt 1", "wait: child-task", "attempt 1"]
    assert '<rect class="waiting"' in timeline and ">6.0<" in timeline


@pytest.mark.parametrize("how", ["resumed", "still queued", "canceled while queued"])
def test_the_timeline_shows_the_queueing_between_a_wait_and_its_resume(admin_client, how):
    """A wait that ended while the run's queue was busy or paused: the run was queued to
    resume, not executing (the audit saw 5 s of "attempt 1" for a run paused that long),
    once it resumed (its attempt's resumed_at), while it still waits to, and when it was
    canceled before it could. Its attempt count is that attempt's, not the engine's
    count taken back by one for the resume."""
    from trigger_celery.models import Waitpoint

    now = timezone.now()
    ago = lambda s: now - timedelta(seconds=s)  # noqa: E731
    status, attempt_status, ended = {
        "resumed": ("COMPLETED", "COMPLETED", now),
        "still queued": ("QUEUED", "SUSPENDED", None),
        "canceled while queued": ("CANCELED", "SUSPENDED", now),
    }[how]
    run = make_run(
        "run_resumed",
        status,
        started_at=ago(10),
        finished_at=ended,
        attempt_count=1 if how == "resumed" else 0,
    )
    Run.objects.filter(id=run.id).update(created_at=ago(10))
    run.attempts.create(
        number=1,
        status=attempt_status,
        started_at=ago(10),
        finished_at=now if how == "resumed" else ago(8),
        resumed_at=ago(1) if how == "resumed" else None,
    )
    wp = Waitpoint.objects.create(
        run=run, step=0, kind="RUN", label="child-task", completed_at=ago(6)
    )
    Waitpoint.objects.filter(id=wp.id).update(created_at=ago(8))
    with CaptureQueriesContext(connection) as read:
        page = admin_client.get(reverse("trigger_celery:run-detail", args=[run.id]))
    page = page.content.decode()
    # The attempts table and the header's count come from one read of the attempts.
    assert sum('FROM "trigger_celery_attempt"' in q["sql"] for q in read) == 1
    timeline = page.split("<h2>Timeline</h2>")[1].split("</table>")[0]
    rows = [r.split("</td>")[0] for r in timeline.split("<tr><td>")[1:]]
    queued = ["attempt 1", "wait: child-task", "queued to resume"]
    assert rows == ([*queued, "attempt 1"] if how == "resumed" else queued)
    shown = re.search(r'queued to resume</td><td class="num">([0-9.]+)<', timeline)
    # From 6 s ago to 1 s ago; or to the run's end or the page's now, a moment later.
    low = 5.0 if how == "resumed" else 6.0
    assert shown and low <= float(shown.group(1)) < low + 2
    assert '<span id="tc-attempts">1</span>' in page
    assert runs.retrieve(run.id).attempt_count == 1


def test_the_timeline_is_drawn_in_a_language_with_a_decimal_comma(admin_client, settings):
    settings.LANGUAGE_CODE = "de"
    now = timezone.now()
    run = make_run("run_de", started_at=now - timedelta(seconds=3), finished_at=now)
    Run.objects.filter(id=run.id).update(created_at=now - timedelta(seconds=3.5))
    page = admin_client.get(reverse("trigger_celery:run-detail", args=[run.id])).content.decode()
    rects = re.findall(r'<rect class="\w+" x="([^"]*)" y="0" width="([^"]*)"', page)
    assert rects
    for x, width in rects:  # SVG lengths: never "0,3"
        float(x), float(width)


def test_test_page_shows_errors_next_to_fields_and_triggers_nothing(admin_client):
    url = reverse("trigger_celery:test")
    page = admin_client.get(url + "?task=greet").content.decode()
    assert "&quot;name&quot;: &quot;&quot;" in page  # an example built from the schema
    bad = admin_client.post(
        url, {"task": "greet", "payload": '{"count": 1}', "max_attempts": "0", "tags": "a"}
    )
    assert bad.status_code == 400
    body = bad.content.decode()
    assert 'id="tc-error-payload"' in body and "does not fit the task" in body
    assert 'id="tc-error-max_attempts"' in body
    bad_option = admin_client.post(
        url, {"task": "greet", "payload": '{"name": "a"}', "machine": "huge-9x"}
    )
    assert bad_option.status_code == 400 and 'id="tc-error-machine"' in bad_option.content.decode()
    bad_delay = admin_client.post(
        url, {"task": "greet", "payload": '{"name": "a"}', "delay": "soonish"}
    ).content.decode()
    assert 'id="tc-error-delay"' in bad_delay and "&#x27;soonish&#x27; is not a delay" in bad_delay
    assert "timedelta" not in bad_delay  # the API's words, which a form cannot type
    assert "Value error" not in bad_delay  # the validator's words, not pydantic's prefix
    bad_queue = admin_client.post(
        url, {"task": "greet", "payload": '{"name": "a"}', "queue": "nowhere-q"}
    )
    assert bad_queue.status_code == 400
    assert "&#x27;nowhere-q&#x27; is not declared" in bad_queue.content.decode()
    assert 'id="tc-error-queue"' in bad_queue.content.decode()
    assert not Run.objects.filter(task_identifier="greet").exists()
    good = admin_client.post(
        url,
        {
            "task": "greet",
            "payload": '{"name": "Ada"}',
            "tags": "t1, t2",
            "delay": "1h",
            "metadata": '{"k": 1}',
            "idempotency_key": "once",
        },
    )
    run = Run.objects.get(task_identifier="greet")
    assert good["Location"] == reverse("trigger_celery:run-detail", args=[run.id])
    assert run.payload == {"name": "Ada"} and run.tags == ["t1", "t2"]
    assert run.status == "DELAYED" and run.metadata == {"k": 1}
    again = admin_client.get(url + "?task=greet").content.decode()
    assert "Ada" in again  # pre-filled from the latest run now
    cached = admin_client.post(
        url, {"task": "greet", "payload": '{"name": "Bo"}', "idempotency_key": "once"}, follow=True
    ).content.decode()
    assert f"Nothing new was triggered: run {run.id} already holds" in cached
    assert Run.objects.filter(task_identifier="greet").count() == 1
    with override_settings(TIME_ZONE="Europe/Paris"):
        admin_client.post(
            url, {"task": "greet", "payload": '{"name": "Cy"}', "delay": "2030-01-01T10:00"}
        )
    local = Run.objects.get(task_identifier="greet", payload={"name": "Cy"})
    assert local.delayed_until == datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def test_test_page_of_a_scheduled_task_offers_the_schedule_payload(admin_client):
    page = admin_client.get(reverse("trigger_celery:test") + "?task=sched-record").content
    assert b"&quot;timestamp&quot;" in page and b"&quot;last_timestamp&quot;: null" in page
    assert b"the payload is the schedule payload" in page


def test_tasks_page_lists_configuration_counts_and_percentiles(admin_client):
    now = timezone.now()
    for i, seconds in enumerate([1, 2, 3, 4, 100]):
        make_run(f"run_stat_{i}", started_at=now, finished_at=now + timedelta(seconds=seconds))
    make_run("run_stat_f", "FAILED")
    page = admin_client.get(reverse("trigger_celery:task-list")).content.decode()
    assert 'data-task="greet"' in page and "payload schema" in page
    assert 'data-task="flaky"' in page and "&quot;max_attempts&quot;: 4" in page
    row = page.split('data-task="hello-world"')[1].split("</tr>")[0]
    assert "COMPLETED</span> 5" in row and "FAILED</span> 1" in row
    assert "3.000 s" in row and "100.000 s" in row
    # hello-world has no retry of its own: the project's policy is shown, said to be it.
    assert "&quot;max_attempts&quot;: 3" in row and "(the project's RETRY)" in row
    assert percentile([1, 2, 3, 4, 100], 0.5) == 3 and percentile([], 0.5) is None


def test_queue_override_above_its_total_limit_is_refused_saying_why(admin_client):
    url = reverse("trigger_celery:queue-action", args=["tenants-total-2", "override"])
    page = admin_client.post(url, {"limit": "3"}, follow=True).content.decode()
    assert "Not changed: queue &#x27;tenants-total-2&#x27;: a concurrency limit of 3 " in page
    assert "above its total_limit 2" in page and "overridden" not in page


def test_queue_override_is_stored_shown_and_reset(admin_client):
    action = "trigger_celery:queue-action"
    admin_client.post(reverse(action, args=["limit-2", "override"]), {"limit": "5"})
    page = admin_client.get(reverse("trigger_celery:queue-list")).content.decode()
    row = page.split('data-queue="limit-2"')[1].split("</tr>")[0]
    assert "5" in row and "overridden" in row and "code: 2" in row
    response = admin_client.post(
        reverse(action, args=["limit-2", "override"]), {"limit": "zero"}, follow=True
    )
    assert "got &#x27;zero&#x27;" in response.content.decode()
    response = admin_client.post(
        reverse(action, args=["limit-2", "override"]), {"limit": "200000"}, follow=True
    )
    assert "from 1 to 100000, got &#x27;200000&#x27;" in response.content.decode()
    huge = "9" * 5000  # more digits than int() takes from a string: a 500 before
    response = admin_client.post(
        reverse(action, args=["limit-2", "override"]), {"limit": huge}, follow=True
    )
    assert response.status_code == 200 and "from 1 to 100000" in response.content.decode()
    # An override above the environment's limit is held to it, and says so.
    admin_client.post(reverse(action, args=["limit-2", "override"]), {"limit": "500"})
    page = admin_client.get(reverse("trigger_celery:queue-list")).content.decode()
    row = page.split('data-queue="limit-2"')[1].split("</tr>")[0]
    assert "500" in row and "held to the environment's 100" in row
    admin_client.post(reverse(action, args=["limit-2", "reset"]))
    page = admin_client.get(reverse("trigger_celery:queue-list")).content.decode()
    assert "overridden" not in page.split('data-queue="limit-2"')[1].split("</tr>")[0]
    # A queue without a limit of its own is held to the environment's.
    unlimited = page.split('data-queue="hello-world"')[1].split("</tr>")[0]
    assert "none" in unlimited and "the environment's 100" in unlimited
    assert admin_client.post(reverse(action, args=["no-such-q", "pause"])).status_code == 404


def test_admin_cancel_and_replay_actions_need_their_permissions(logged_in_client):
    queued = make_run("run_adm_q", "QUEUED")
    changelist = reverse("admin:trigger_celery_run_changelist")
    data = {"action": "cancel_runs", "_selected_action": [queued.id]}
    viewer = logged_in_client("view_run")
    viewer.post(changelist, data)
    assert Run.objects.get(id=queued.id).status == "QUEUED"
    assert "cancel_runs" not in viewer.get(changelist).content.decode()
    canceler = logged_in_client("view_run", "cancel_run")
    assert "cancel_runs" in canceler.get(changelist).content.decode()
    canceler.post(changelist, data)
    assert Run.objects.get(id=queued.id).status == "CANCELED"
    replay = {"action": "replay_runs", "_selected_action": [queued.id]}
    canceler.post(changelist, replay)
    assert not Run.objects.filter(replayed_from_id=queued.id).exists()
    logged_in_client("view_run", "replay_run").post(changelist, replay)
    assert Run.objects.filter(replayed_from_id=queued.id).count() == 1


def test_admin_actions_refuse_more_runs_than_the_list_counts(admin_client, monkeypatch):
    """ "Select all 1001 runs" acted on every match (3,000 cancels took 100 s in one
    request): past the cap the actions refuse and point to the dashboard's bulk ones."""
    from trigger_celery.admin import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "COUNT_CAP", 3)
    for i in range(4):
        make_run(f"run_many_{i}", "QUEUED", tags=["many"])
    changelist = reverse("admin:trigger_celery_run_changelist")
    for action, done in (("cancel_runs", "canceled"), ("replay_runs", "replayed")):
        data = {"action": action, "select_across": "1", "_selected_action": ["run_many_0"]}
        page = admin_client.post(changelist + "?tag=many", data, follow=True).content.decode()
        assert f"Not {done}: the selection holds more than 3 runs." in page, page[-3000:]
    assert set(Run.objects.values_list("status", flat=True)) == {"QUEUED"}
    assert not Run.objects.exclude(replayed_from=None).exists()
    # Within the cap they act as before.
    data = {"action": "cancel_runs", "_selected_action": ["run_many_0", "run_many_1"]}
    admin_client.post(changelist, data)
    assert Run.objects.filter(status="CANCELED").count() == 2


def test_admin_run_list_counts_at_most_the_cap_and_has_no_date_hierarchy(admin_client):
    from trigger_celery.admin import CappedCountPaginator, RunAdmin

    assert RunAdmin.date_hierarchy is None and RunAdmin.show_full_result_count is False
    for i in range(7):
        make_run(f"run_cap_{i}")
    paginator = CappedCountPaginator(Run.objects.all(), 2)
    paginator.COUNT_CAP = 5
    assert paginator.count == 6  # the cap plus one: "more than the cap"
    page = admin_client.get(
        reverse("admin:trigger_celery_run_changelist") + "?task=hello-world&status__exact=COMPLETED"
    )
    assert page.status_code == 200 and "run_cap_6" in page.content.decode()


def test_admin_run_list_loads_only_its_columns_and_links_each_run(admin_client):
    changelist = reverse("admin:trigger_celery_run_changelist") + "?status__exact=COMPLETED"
    for i in range(3):
        make_run(f"run_row_{i}", payload={"big": "x" * 1000}, metadata={"m": 1})
    with CaptureQueriesContext(connection) as few:
        page = admin_client.get(changelist).content.decode()
    for i in range(3, 30):
        make_run(f"run_row_{i}", payload={"big": "x" * 1000}, metadata={"m": 1})
    with CaptureQueriesContext(connection) as many:
        assert "run_row_29" in admin_client.get(changelist).content.decode()
    assert len(many) == len(few)  # no query per row
    for column in ("payload", "output", "metadata", "error", "options"):
        assert not any(f'"trigger_celery_run"."{column}"' in q["sql"] for q in many), column
    change = reverse("admin:trigger_celery_run_change", args=[quote("run_row_2")])
    assert f'<a href="{change}?_changelist_filters=status__exact%3DCOMPLETED">run_row_2</a>' in page
    assert 'name="_selected_action" value="run_row_2" class="action-select"' in page
    assert (
        "?o=-1&amp;status__exact=COMPLETED"
        in admin_client.get(changelist + "&o=1").content.decode()
    )


def test_bulk_confirmation_states_the_count(admin_client):
    for i in range(4):
        make_run(f"run_bulk_{i}", "QUEUED", tags=["bulk"])
    make_run("run_bulk_other", "QUEUED")
    url = reverse("trigger_celery:bulk-new")
    page = admin_client.get(url, {"action": "cancel", "scope": "filter", "filter": "tag=bulk"})
    assert "Cancel 4 runs?" in page.content.decode()
    page = admin_client.get(url, {"action": "replay", "run": ["run_bulk_1", "run_bulk_2"]})
    assert "Replay 2 runs?" in page.content.decode()
    assert admin_client.get(url, {"action": "cancel"}).status_code == 400
    unknown = admin_client.get(url, {"action": "<img src=x>", "run": ["x"]})
    assert unknown.status_code == 400 and unknown["Content-Type"].startswith("text/plain")
    assert admin_client.get(url, {"action": "explode", "run": ["x"]}).status_code == 400
    assert json.loads(admin_client.get(LIST_JSON).content)["runs"]


class _Money:  # a type pydantic validates (isinstance) and has no JSON Schema for
    def __init__(self, cents: int) -> None:
        self.cents = cents


@pytest.fixture
def no_json_schema_task():
    from pydantic import BaseModel, ConfigDict

    from trigger_celery import schema_task
    from trigger_celery.engine.registry import registry

    class Order(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        customer: str
        price: _Money | None = None

    definition = schema_task(id="no-json-schema", schema=Order, run=lambda o, ctx: o.customer)
    try:
        yield definition
    finally:
        registry.tasks.pop("no-json-schema", None)
        registry.queues.pop("no-json-schema", None)
        registry._declared.discard("no-json-schema")


def test_a_schema_with_no_json_schema_leaves_the_tasks_and_test_pages_up(
    admin_client, no_json_schema_task
):
    """One such task answered 500 for the whole tasks page, and for its test page while
    it had no run (the example is built from the schema)."""
    page = admin_client.get(reverse("trigger_celery:task-list"))
    assert page.status_code == 200
    assert 'data-task="no-json-schema"' in page.content.decode()
    test = admin_client.get(reverse("trigger_celery:test") + "?task=no-json-schema")
    assert test.status_code == 200
