"""Dashboard actions against real workers: a limit override honoured by every worker
(and after the store is flushed and restored), and a bulk cancel done in the background."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.urls import reverse

from tests.integration.harness import max_overlap, wait_for
from tests.taskapp import events
from trigger_celery import queues, tasks
from trigger_celery.engine.queueing import restore
from trigger_celery.models import BulkAction, Run

pytestmark = pytest.mark.integration


def overlap_of(tag: str, count: int) -> int:
    handles = [tasks.trigger("override-me", {"tag": tag, "seconds": 0.5}) for _ in range(count)]
    ids = [h.id for h in handles]
    wait_for(
        lambda: Run.objects.filter(id__in=ids, status="COMPLETED").count() == count,
        timeout=60,
        what=f"{count} runs of override-me",
    )
    return max_overlap([(v[2], v[3]) for v in events.values(f"interval:{tag}")])


def test_a_limit_overridden_from_the_dashboard_is_honoured_by_the_worker(live, admin_client):
    url = reverse("trigger_celery:queue-action", args=["override-1", "override"])
    try:
        assert admin_client.post(url, {"limit": "3"}).status_code == 302
        assert queues.retrieve("override-1").concurrency_limit == 3
        assert overlap_of("ovr-a", 6) == 3  # the code says 1
        # The store loses everything; restoring it from the database keeps the override.
        redis.Redis.from_url(settings.REDIS_URL).flushdb()
        restore()
        assert overlap_of("ovr-b", 6) == 3
    finally:
        queues.reset_limit("override-1")
    assert overlap_of("ovr-c", 3) == 1  # reset: the code's limit again


def test_bulk_cancel_of_everything_a_filter_matches_runs_in_the_background(
    transactional_db, admin_client
):
    queues.pause("shared-1")  # nothing starts them meanwhile
    try:
        ids = [tasks.trigger("shared-a", {"seconds": 0}, tags=["bulk-bg"]).id for _ in range(230)]
        other = tasks.trigger("shared-a", {"seconds": 0}).id
        new = reverse("trigger_celery:bulk-new")
        page = admin_client.get(
            new, {"action": "cancel", "scope": "filter", "filter": "tag=bulk-bg"}
        )
        assert "Cancel 230 runs?" in page.content.decode()
        response = admin_client.post(
            new, {"action": "cancel", "scope": "filter", "filter": "tag=bulk-bg"}
        )
        row = BulkAction.objects.get()
        assert response["Location"] == reverse("trigger_celery:bulk-detail", args=[row.pk])
        progress = reverse("trigger_celery:bulk-json", args=[row.pk])
        body = wait_for(
            lambda: (b := admin_client.get(progress).json())["finished"] and b,
            timeout=60,
            what="the bulk cancel to finish",
        )
        assert (body["total"], body["done"], body["failed"]) == (230, 230, 0)
        assert Run.objects.filter(id__in=ids, status="CANCELED").count() == 230
        assert Run.objects.get(id=other).status == "QUEUED"
    finally:
        queues.resume("shared-1")


def test_bulk_replay_of_selected_runs(transactional_db, admin_client):
    queues.pause("shared-1")
    try:
        ids = [tasks.trigger("shared-a", {"n": i}).id for i in range(3)]
        admin_client.post(reverse("trigger_celery:bulk-new"), {"action": "replay", "run": ids})
        row = BulkAction.objects.get()
        wait_for(
            lambda: BulkAction.objects.get(pk=row.pk).finished_at is not None,
            timeout=30,
            what="the bulk replay to finish",
        )
        replays = Run.objects.filter(replayed_from_id__in=ids)
        assert sorted(r.payload["n"] for r in replays) == [0, 1, 2]
        assert BulkAction.objects.get(pk=row.pk).done == 3
    finally:
        queues.resume("shared-1")
