"""The schedule pages in a real headless Chromium: create, edit, deactivate, delete."""

from __future__ import annotations

import pytest

from tests.taskapp import scheduled  # noqa: F401  (defines the schedules.task tasks)
from trigger_celery import schedules
from trigger_celery.models import Schedule

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_a_refused_edit_leaves_the_page_showing_the_schedule_as_saved(browser_page):
    page = browser_page.page
    made = schedules.create(
        task="sched-record", cron="0 9 * * *", timezone="UTC", deduplication_key="b-edit"
    )
    browser_page.go(f"/trigger/schedules/{made.id}/")
    page.select_option("select[name=timezone]", "Asia/Tokyo")
    page.fill("input[name=cron]", "not a cron")
    page.click("form:has(input[name=cron]) button[type=submit]")
    page.wait_for_selector(".errorlist")
    assert "not a cron" in page.inner_text(".errorlist")
    # Nothing was saved, and the page says what is saved, not what was typed.
    assert Schedule.objects.get(id=made.id).timezone == "UTC"
    head = page.inner_text("main h1 + p")
    assert "UTC" in head and "Asia/Tokyo" not in head
    assert "Next fire times (UTC)" in page.inner_text("main")
    # What was typed stays in the form, to be corrected.
    assert page.input_value("select[name=timezone]") == "Asia/Tokyo"
    page.fill("input[name=cron]", "30 8 * * *")
    page.click("form:has(input[name=cron]) button[type=submit]")
    page.wait_for_selector("text=Schedule saved.")
    saved = Schedule.objects.get(id=made.id)
    assert (saved.cron, saved.timezone) == ("30 8 * * *", "Asia/Tokyo")
    assert "Asia/Tokyo" in page.inner_text("main h1 + p")
    assert browser_page.csp_violations() == []


def test_create_deactivate_activate_and_delete_a_schedule(browser_page):
    page = browser_page.page
    browser_page.go("/trigger/schedules/new/")
    page.select_option("select[name=task_identifier]", "sched-record")
    page.fill("input[name=cron]", "0 9 * * 1L")
    page.select_option("select[name=timezone]", "Europe/Paris")
    page.click("main form button[type=submit]")
    page.wait_for_selector("text=created")
    made = Schedule.objects.get(task_identifier="sched-record", declarative=False)
    assert page.url.endswith(f"/trigger/schedules/{made.id}/")
    assert page.locator("main ol li").count() == 5  # the next fire times
    page.click("button:has-text('Deactivate')")
    page.wait_for_selector("text=deactivated")
    assert Schedule.objects.get(id=made.id).active is False
    page.click("button:has-text('Activate')")
    page.wait_for_selector("text=activated")
    assert Schedule.objects.get(id=made.id).active is True
    page.click("button:has-text('Delete')")  # the confirmation is dismissed: nothing happens
    assert browser_page.dialogs == ["Delete this schedule?"]
    assert Schedule.objects.filter(id=made.id).exists()
    page.remove_listener("dialog", browser_page._dialog)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Delete')")
    page.wait_for_selector("text=deleted")
    assert not Schedule.objects.filter(id=made.id).exists()
    assert browser_page.csp_violations() == []
