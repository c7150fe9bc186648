"""Take the screenshots of docs/dashboard.md from the example project.

    .venv/bin/python scripts/dashboard_screenshots.py      # writes docs/img/*.png

Starts ``manage.py trigger_dev`` on a throw-away SQLite database, triggers a few runs,
then drives Debian's Chromium (``/usr/bin/chromium``) with Playwright.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "example_project"
OUT = ROOT / "docs" / "img"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

SEED = """
from django.contrib.auth import get_user_model
from demo.tasks import hello_world, send_invoice, unreliable
from trigger_celery import tasks
get_user_model().objects.create_superuser("demo", "demo@example.com", "demo")
for i in range(12):
    hello_world.trigger({"message": f"hello #{i}"}, tags=["docs", f"batch-{i % 3}"])
for customer in ("ACME", "Globex", "Initech"):
    send_invoice.trigger({"customer": customer, "amount_cents": 1999}, tags=["billing"])
unreliable.trigger({"fail_times": 2}, tags=["flaky"])
hello_world.trigger({"message": "tomorrow"}, delay="1d", tags=["later"])
"""


def manage(args: list[str], env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT, env=env, check=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data = tempfile.mkdtemp(prefix="tc-shots-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "DJANGO_SETTINGS"))}
    env.update(TRIGGER_DEMO_DATA=data, PYTHONPATH=str(ROOT))
    manage(["migrate", "--noinput", "-v", "0"], env)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "manage.py", "trigger_dev", f"127.0.0.1:{port}", "--loglevel", "WARNING"],
        cwd=PROJECT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/static/admin/css/base.css", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        manage(["shell", "-c", SEED], env)
        time.sleep(6)  # let the demo worker finish most of them: a realistic mix
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            for scheme in ("light", "dark"):
                page = browser.new_page(
                    viewport={"width": 1280, "height": 800}, color_scheme=scheme
                )
                page.goto(base + "/admin/login/?next=/trigger/")
                page.fill("#id_username", "demo")
                page.fill("#id_password", "demo")
                page.click("input[type=submit]")
                page.wait_for_url("**/trigger/")
                if scheme == "dark":
                    page.screenshot(path=str(OUT / "runs-dark.png"))
                    continue
                page.screenshot(path=str(OUT / "runs.png"))
                failed = page.locator("#tc-runs tr", has_text="unreliable").first
                failed.locator("a").first.click()
                page.wait_for_selector("#tc-status")
                page.screenshot(path=str(OUT / "run-detail.png"), full_page=True)
                for name, path in (
                    ("tasks", "/trigger/tasks/"),
                    ("test", "/trigger/test/?task=send-invoice"),
                    ("queues", "/trigger/queues/"),
                    ("schedules", "/trigger/schedules/"),
                    ("admin-runs", "/admin/trigger_celery/run/"),
                ):
                    page.goto(base + path)
                    page.screenshot(path=str(OUT / f"{name}.png"))
                page.goto(base + "/trigger/?tag=docs")
                page.check("#tc-scope")
                page.click("#tc-bulk button[value=cancel]")
                page.wait_for_selector("#tc-bulk-confirm")
                page.screenshot(path=str(OUT / "bulk-confirm.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    main()
