"""Live pages say when they stop being live, instead of showing old data as current."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.integration.browser.test_dashboard_browser import make_run
from trigger_celery.models import Run

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def _delayed(run_id: str) -> Run:
    """A run the page polls for, that no worker or beat of the session will touch."""
    return make_run(run_id, "DELAYED", delayed_until=timezone.now() + timedelta(hours=1))


def test_the_live_list_says_so_when_the_session_ends(browser_page):
    page = browser_page.page
    _delayed("run_b_session")
    browser_page.go("/trigger/")
    page.wait_for_selector('#tc-runs tr[data-id="run_b_session"] .status.DELAYED')
    assert page.locator("#tc-live-state").count() == 0
    page.context.clear_cookies()  # logged out (elsewhere, or the session expired)
    page.wait_for_selector("#tc-live-state")
    assert "no longer logged in" in page.inner_text("#tc-live-state")
    assert browser_page.csp_violations() == []


def test_the_run_page_says_so_while_the_server_does_not_answer(browser_page):
    page = browser_page.page
    run = _delayed("run_b_outage")
    browser_page.go(f"/trigger/runs/{run.id}/")
    page.route("**/runs/run_b_outage/json/**", lambda route: route.abort())
    page.wait_for_selector("#tc-live-state")
    assert "does not answer" in page.inner_text("#tc-live-state")
    page.unroute("**/runs/run_b_outage/json/**")
    Run.objects.filter(id=run.id).update(tags=["answered"])
    page.wait_for_selector("#tc-tags .tag:has-text('answered')")  # live again...
    assert page.locator("#tc-live-state").count() == 0  # ...and the notice is gone
    # Final: the page reloads once and stops polling (no request left in flight when the
    # test's database goes).
    Run.objects.filter(id=run.id).update(status="CANCELED", finished_at=timezone.now())
    page.wait_for_selector("#tc-status.CANCELED")
    page.wait_for_load_state()
    assert browser_page.csp_violations() == []
