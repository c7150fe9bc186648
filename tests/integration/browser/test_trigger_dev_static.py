"""Under ``manage.py trigger_dev`` the admin and the dashboard get their stylesheets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, Process, wait_for
from tests.integration.test_embedded_dev import PROJECT, _free_port, _manage

pytestmark = [pytest.mark.integration, pytest.mark.browser]

MAKE_USER = (
    "from django.contrib.auth import get_user_model\n"
    "get_user_model().objects.create_superuser('demo', 'demo@example.com', 'demo')\n"
)
RULES = """(suffix) => {
    const sheet = [...document.styleSheets].find(s => s.href && s.href.endsWith(suffix));
    return sheet ? sheet.cssRules.length : -1;
}"""


def test_admin_and_dashboard_stylesheets_load_and_apply_under_trigger_dev(chromium, tmp_path: Path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TC_", "REDIS", "PG", "DJANGO_SETTINGS"))
    }
    env.update(
        TRIGGER_DEMO_DATA=str(tmp_path / "data"),
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="example_project.settings",
    )
    _manage(["migrate", "--noinput", "-v", "0"], env)
    _manage(["shell", "-c", MAKE_USER], env)
    port = _free_port()
    dev = Process(
        "trigger-dev-static",
        [sys.executable, "manage.py", "trigger_dev", f"127.0.0.1:{port}"],
        tmp_path,
        env,
        cwd=PROJECT,
        test_settings=False,
    )
    context = chromium.new_context()
    try:
        wait_for(lambda: "ready." in dev.log() or not dev.alive(), timeout=60, what="trigger_dev")
        assert dev.alive(), dev.log()
        page = context.new_page()
        statuses: dict[str, int] = {}
        page.on("response", lambda r: statuses.__setitem__(r.url.split("/static/")[-1], r.status))
        page.goto(f"http://127.0.0.1:{port}/admin/login/?next=/trigger/")
        assert statuses.get("admin/css/base.css") == 200
        assert page.evaluate(RULES, "admin/css/base.css") > 50  # parsed and applied
        page.fill("#id_username", "demo")
        page.fill("#id_password", "demo")
        page.click("input[type=submit]")
        page.wait_for_url("**/trigger/")
        assert statuses.get("trigger_celery/dashboard.css") == 200
        assert statuses.get("trigger_celery/dashboard.js") == 200
        assert page.evaluate(RULES, "trigger_celery/dashboard.css") > 20
        header = page.evaluate("getComputedStyle(document.querySelector('header')).display")
        assert header == "flex"  # a rule of dashboard.css is in effect
    finally:
        context.close()
        dev.stop()
