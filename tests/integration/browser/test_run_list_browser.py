"""The runs list in a real headless Chromium: live redraws and paging together."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.integration.browser.test_dashboard_browser import make_run

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_runs_pushed_off_the_live_first_page_open_the_next_one(browser_page):
    page = browser_page.page
    for i in range(60):
        make_run(f"run_p_{i:03d}", "FAILED", tags=["paged"])
    browser_page.go("/trigger/?tag=paged")
    rows = page.locator("#tc-runs tbody tr")
    assert rows.last.get_attribute("data-id") == "run_p_010"
    for run_id in ("run_p_010", "run_p_012", "run_p_030"):
        page.check(f'#tc-runs input[value="{run_id}"]')
    for i in range(100, 105):  # five newer runs: the live page now ends at run_p_015
        make_run(f"run_p_{i:03d}", "FAILED", tags=["paged"])
    page.wait_for_selector('#tc-runs tr[data-id="run_p_104"]')
    assert rows.count() == 50 and rows.last.get_attribute("data-id") == "run_p_015"
    # Two ticked runs left the page: the user is told, not left to find out.
    assert page.inner_text("#tc-selection-note").startswith("2 selected runs left this page")
    assert page.is_checked('#tc-runs input[value="run_p_030"]')
    page.click("#tc-next")
    page.wait_for_url("**after=**")
    ids = [rows.nth(i).get_attribute("data-id") for i in range(rows.count())]
    assert ids == [f"run_p_{i:03d}" for i in range(14, -1, -1)]  # none skipped
    assert browser_page.csp_violations() == []


def test_the_next_page_link_appears_when_the_live_first_page_fills_up(browser_page):
    page = browser_page.page
    for i in range(50):
        make_run(f"run_f_{i:03d}", "FAILED", tags=["filling"])
    browser_page.go("/trigger/?tag=filling")
    assert page.locator("#tc-next").count() == 0  # exactly one page
    make_run("run_f_100", "FAILED", tags=["filling"])
    page.wait_for_selector("#tc-next")
    page.click("#tc-next")
    page.wait_for_url("**after=**")
    assert page.locator("#tc-runs tbody tr").first.get_attribute("data-id") == "run_f_000"
    assert browser_page.csp_violations() == []


def test_every_child_of_a_run_with_many_is_reachable_from_its_page(browser_page):
    page = browser_page.page
    parent = make_run("run_kids", "WAITING")
    for i in range(105):
        make_run(f"run_kid_{i:03d}", parent_id=parent.id, root_id=parent.id, depth=1)
    make_run("run_not_a_kid")
    browser_page.go(f"/trigger/runs/{parent.id}/")
    assert page.locator("ul.tree ul li a[href^='/trigger/runs/run_kid_']").count() == 100
    page.click("#tc-all-children")
    page.wait_for_url("**parent=run_kids**")
    seen = []
    while True:
        rows = page.locator("#tc-runs tbody tr")
        seen += [rows.nth(i).get_attribute("data-id") for i in range(rows.count())]
        if page.locator("#tc-next").count() == 0:
            break
        with page.expect_navigation():
            page.click("#tc-next")
    assert sorted(seen) == [f"run_kid_{i:03d}" for i in range(105)]
    assert page.input_value("input[name=parent]") == "run_kids"
    assert browser_page.csp_violations() == []


def test_a_run_arriving_after_select_all_is_not_selected_and_unticks_it(browser_page):
    """The runs are DELAYED a day: the session's shared beat and worker, if running,
    leave them alone (QUEUED rows made here were started and completed by them, and
    there was nothing left to cancel)."""
    page = browser_page.page
    later = {"delayed_until": timezone.now() + timedelta(days=1)}
    seen = [make_run(f"run_s_{i:03d}", "DELAYED", tags=["selecting"], **later).id for i in range(3)]
    browser_page.go("/trigger/?tag=selecting")
    page.check("#tc-select-all")
    assert all(page.is_checked(f'#tc-runs input[value="{run_id}"]') for run_id in seen)
    make_run("run_s_100", "DELAYED", tags=["selecting"], **later)  # one the user has not seen
    page.wait_for_selector('#tc-runs tr[data-id="run_s_100"]')
    assert not page.is_checked("#tc-select-all")
    assert not page.is_checked('#tc-runs input[value="run_s_100"]')
    assert all(page.is_checked(f'#tc-runs input[value="{run_id}"]') for run_id in seen)
    page.click("#tc-bulk button[value=cancel]")  # acts on the three the user ticked, only
    page.wait_for_selector("text=Cancel 3 runs?")
    assert (
        sorted(
            page.eval_on_selector_all(
                "#tc-bulk-confirm input[name=run]", "boxes => boxes.map(b => b.value)"
            )
        )
        == seen
    )
    assert browser_page.csp_violations() == []
