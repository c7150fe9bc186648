"""The queues page reads the database a fixed number of times, however many queues."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from trigger_celery import queue, queues
from trigger_celery.coordination.factory import reset_store_cache
from trigger_celery.engine.registry import registry

pytestmark = pytest.mark.django_db

EXTRA = [f"many-{i:02d}" for i in range(30)]


@pytest.fixture
def many_queues() -> Iterator[list[str]]:
    """Thirty more queues, declared in this process only, some paused."""
    for i, name in enumerate(EXTRA):
        queue(name=name, concurrency_limit=i + 1)
    queues.pause(EXTRA[3])
    queues.override_limit(EXTRA[4], 9)
    try:
        yield EXTRA
    finally:
        for name in EXTRA:
            queues.resume(name)
            queues.reset_limit(name)
        with registry._lock:
            for name in EXTRA:
                registry.queues.pop(name, None)
                registry._declared.discard(name)


def _queries_for_the_page(client) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        page = client.get(reverse("trigger_celery:queue-list")).content.decode()
    return len(captured), page


def test_queues_page_queries_do_not_grow_with_the_number_of_queues(admin_client, request):
    few, _ = _queries_for_the_page(admin_client)
    request.getfixturevalue("many_queues")
    many, page = _queries_for_the_page(admin_client)
    assert many == few
    paused = page.split(f'data-queue="{EXTRA[3]}"')[1].split("</tr>")[0]
    assert "PAUSED" in paused
    overridden = page.split(f'data-queue="{EXTRA[4]}"')[1].split("</tr>")[0]
    assert "overridden" in overridden and "code: 5" in overridden


def test_on_the_database_store_too(admin_client, settings, request):
    """The embedded default keeps its counts in the database: the page asks for every
    queue's at once, not three queries per queue (review of the one-query page)."""
    settings.TRIGGER_CELERY = {**settings.TRIGGER_CELERY, "STORE": "database"}
    reset_store_cache()
    try:
        few, _ = _queries_for_the_page(admin_client)
        request.getfixturevalue("many_queues")
        many, _ = _queries_for_the_page(admin_client)
        assert many == few
    finally:
        reset_store_cache()
