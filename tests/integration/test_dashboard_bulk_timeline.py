"""Bulk cancel counts what it canceled; the timeline says how a run ended and what waited."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from tests.integration.test_dashboard_pages import make_run
from trigger_celery import bulk
from trigger_celery.models import BulkAction, Run, Waitpoint
from trigger_celery.views.run_filters import RunFilters

pytestmark = pytest.mark.django_db

NEW = reverse("trigger_celery:bulk-new")


def timeline_rows(client, run: Run) -> list[str]:
    page = client.get(reverse("trigger_celery:run-detail", args=[run.id])).content.decode()
    table = page.split("<h2>Timeline</h2>")[1].split("</table>")[0]
    return [r.split("</td>")[0] for r in table.split("<tr><td>")[1:]]


def test_a_bulk_cancel_of_finished_runs_offers_nothing_to_cancel(admin_client):
    for i in range(5):
        make_run(f"run_done_{i}", "COMPLETED", tags=["over"])
    query = {"action": "cancel", "scope": "filter", "filter": "tag=over"}
    page = admin_client.get(NEW, query).content.decode()
    assert "Nothing to cancel: the 5 runs have already finished." in page
    assert "Yes, cancel" not in page and "Cancel 5 runs?" not in page
    admin_client.post(NEW, query)  # posted anyway: nothing is started
    assert not BulkAction.objects.exists()
    # Replay is about every run, finished or not.
    assert "Replay 5 runs?" in admin_client.get(NEW, {**query, "action": "replay"}).content.decode()


def test_a_bulk_cancel_confirmation_counts_only_unfinished_runs(admin_client):
    for i in range(3):
        make_run(f"run_mix_q{i}", "QUEUED", tags=["mix"])
    for i in range(2):
        make_run(f"run_mix_c{i}", "COMPLETED", tags=["mix"])
    page = admin_client.get(NEW, {"action": "cancel", "run": ["run_mix_q0", "run_mix_c0"]})
    text = page.content.decode()
    assert "Cancel 1 run?" in text and "Yes, cancel 1 run<" in text
    assert "1 more matching run has already finished" in text
    page = admin_client.get(NEW, {"action": "cancel", "scope": "filter", "filter": "tag=mix"})
    text = page.content.decode()
    assert "Cancel 3 runs?" in text and "2 more matching runs have already finished" in text


def test_a_bulk_cancel_reports_runs_that_finished_before_their_turn_as_skipped(admin_client):
    for i in range(5):
        make_run(f"run_race_{i}", "QUEUED", tags=["race"])
    row = BulkAction.objects.create(
        action="cancel", filters=RunFilters.from_query(QueryDict("tag=race")).as_dict(), total=5
    )
    # Two of them complete on their own after the confirmation, before the cancel gets there.
    Run.objects.filter(id__in=["run_race_1", "run_race_3"]).update(
        status="COMPLETED", finished_at=timezone.now()
    )
    while bulk.process_chunk(row.pk):
        pass
    row.refresh_from_db()
    assert (row.total, row.done, row.failed) == (5, 3, 0)
    assert bulk.skipped(row) == 2
    statuses = dict(Run.objects.filter(id__startswith="run_race_").values_list("id", "status"))
    assert sorted(statuses.values()) == ["CANCELED"] * 3 + ["COMPLETED"] * 2
    body = admin_client.get(reverse("trigger_celery:bulk-json", args=[row.pk])).json()
    assert (body["done"], body["failed"], body["skipped"], body["finished"]) == (3, 0, 2, True)
    page = admin_client.get(reverse("trigger_celery:bulk-detail", args=[row.pk])).content.decode()
    assert "3 done, 0 failed, 2 skipped (already finished), of 5" in page


class ProcessDied(BaseException):
    """The web process working the action goes away (not an error it could catch)."""


@pytest.mark.parametrize(("action", "status"), [("replay", "COMPLETED"), ("cancel", "QUEUED")])
def test_a_bulk_action_resumed_after_its_process_died_mid_chunk_does_each_run_once(
    monkeypatch, action, status
):
    """Progress was saved once per chunk: a chunk cut off part-way was done again, so
    its replays were made twice (and, with no cursor yet, the replays were replayed), and
    its cancels were counted "skipped (already finished)"."""
    for i in range(5):
        make_run(f"run_die_{i}", status, tags=["die"])
    filters = RunFilters.from_query(QueryDict("tag=die")).as_dict()
    row = bulk.create(action, run_ids=[], filters=filters, user="tester")
    real = getattr(bulk, f"{action}_run")
    calls: list[str] = []

    def dies_on_the_third_run(run_id, *args):
        result = real(run_id, *args)
        calls.append(run_id)
        if len(calls) == 3:  # its work done, not yet committed
            raise ProcessDied
        return result

    monkeypatch.setattr(bulk, f"{action}_run", dies_on_the_third_run)
    with pytest.raises(ProcessDied):
        bulk.process_chunk(row.pk)
    monkeypatch.setattr(bulk, f"{action}_run", real)
    while bulk.process_chunk(row.pk):  # the progress page resumes it
        pass
    row.refresh_from_db()
    assert (row.total, row.done, row.failed, bulk.skipped(row)) == (5, 5, 0, 0)
    originals = {f"run_die_{i}" for i in range(5)}
    if action == "replay":
        replayed = Counter(
            Run.objects.exclude(replayed_from=None).values_list("replayed_from_id", flat=True)
        )
        assert replayed == dict.fromkeys(originals, 1)
    else:
        statuses = Run.objects.filter(id__in=originals).values_list("status", flat=True)
        assert set(statuses) == {"CANCELED"}


def test_the_timeline_of_a_delayed_run_canceled_before_its_delay_says_so(admin_client):
    now = timezone.now()
    run = make_run(
        "run_delayed_gone", "CANCELED", finished_at=now, delayed_until=now + timedelta(hours=1)
    )
    Run.objects.filter(id=run.id).update(created_at=now - timedelta(seconds=10))
    assert timeline_rows(admin_client, run) == ["delayed, then canceled"]


def test_the_timeline_names_a_time_wait_and_a_retry_delay(admin_client):
    now = timezone.now()
    at = lambda s: now - timedelta(seconds=s)  # noqa: E731
    run = make_run("run_timed", started_at=at(20), finished_at=now)
    Run.objects.filter(id=run.id).update(created_at=at(20))
    run.attempts.create(number=1, status="FAILED", started_at=at(20), finished_at=at(15))
    run.attempts.create(number=2, status="COMPLETED", started_at=at(12), finished_at=now)
    wp = Waitpoint.objects.create(
        run=run, step=0, kind="DATETIME", label="wait", resume_at=at(5), completed_at=at(5)
    )
    Waitpoint.objects.filter(id=wp.id).update(created_at=at(10))
    rows = timeline_rows(admin_client, run)
    assert rows == ["attempt 1", "retry delay", "attempt 2", "wait 5s", "attempt 2"]


def test_the_timeline_of_a_run_queued_again_after_its_wait_shows_it_queued(admin_client):
    """Its wait ended and it waits for a slot: its suspended attempt must not be drawn
    as executing until now (review of the waiting timeline)."""
    now = timezone.now()
    at = lambda s: now - timedelta(seconds=s)  # noqa: E731
    run = make_run("run_queued_again", "QUEUED")
    Run.objects.filter(id=run.id).update(created_at=at(60))
    run.attempts.create(number=1, status="SUSPENDED", started_at=at(60), finished_at=at(58))
    wp = Waitpoint.objects.create(
        run=run, step=0, kind="DATETIME", label="wait", resume_at=at(50), completed_at=at(50)
    )
    Waitpoint.objects.filter(id=wp.id).update(created_at=at(58))
    rows = timeline_rows(admin_client, run)
    # Its wait, then its queueing since the wait ended: not executing.
    assert rows == ["attempt 1", "wait 8s", "queued to resume"]
