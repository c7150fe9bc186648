"""The dashboard on a phone-sized screen: the page never scrolls sideways, its tables do."""

from __future__ import annotations

import pytest

from tests.integration.browser.test_dashboard_browser import make_run
from tests.taskapp import scheduled  # noqa: F401  (defines the schedules.task tasks)
from trigger_celery import schedules

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PAGES = [
    "/trigger/",
    "/trigger/runs/run_narrow/",
    "/trigger/tasks/",
    "/trigger/queues/",
    "/trigger/schedules/",
    "/trigger/test/?task=hello-world",
]


def test_no_page_scrolls_sideways_on_a_375_pixel_screen(browser_page):
    make_run(
        "run_narrow",
        tags=["customer-with-a-rather-long-name", "second-tag"],
        metadata={"progress": 0.5, "note": "a long metadata value " * 5},
        idempotency_key="an-idempotency-key-that-is-quite-long-as-they-often-are",
    )
    schedules.create(task="sched-record", cron="0 9 * * 1-5", deduplication_key="narrow")
    page = browser_page.page
    page.set_viewport_size({"width": 375, "height": 800})
    wide = {}
    for path in PAGES:
        assert browser_page.go(path).status == 200, path
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 375:
            wide[path] = width
    assert wide == {}, wide  # each page's width when it scrolled sideways
    # The runs table is wider than the screen: it scrolls within itself.
    browser_page.go("/trigger/")
    table = page.locator("table").first
    assert table.evaluate("t => t.scrollWidth > t.clientWidth"), "the table was cut, not scrolled"
