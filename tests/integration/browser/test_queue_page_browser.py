"""The queues page in a real headless Chromium, with queue names as users write them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from trigger_celery import queue, queues
from trigger_celery.engine.registry import registry

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SLASHED = "emails/priority"


@pytest.fixture
def slashed_queue() -> Iterator[str]:
    """A queue whose name has a slash in it, declared in this process only."""
    queue(name=SLASHED, concurrency_limit=2)
    try:
        yield SLASHED
    finally:
        queues.resume(SLASHED)
        queues.reset_limit(SLASHED)
        with registry._lock:
            registry.queues.pop(SLASHED, None)
            registry._declared.discard(SLASHED)


def test_a_queue_with_a_slash_in_its_name_is_listed_paused_and_overridden(
    browser_page, slashed_queue
):
    page = browser_page.page
    response = browser_page.go("/trigger/queues/")
    assert response.status == 200
    row = f'tr[data-queue="{slashed_queue}"]'
    page.locator(f"{row} button", has_text="Pause").click()
    page.wait_for_selector(f'{row} .state:has-text("PAUSED")')
    assert queues.retrieve(slashed_queue).paused is True
    page.fill(f"{row} input[name=limit]", "5")
    page.locator(f"{row} button", has_text="Override limit").click()
    page.wait_for_selector(f"{row} .overridden")
    assert queues.retrieve(slashed_queue).concurrency_limit == 5
    page.locator(f"{row} button", has_text="Resume").click()
    page.wait_for_selector(f'{row} .state:has-text("RUNNING")')
    assert browser_page.csp_violations() == []
