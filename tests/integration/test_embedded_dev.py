"""The embedded default: ``manage.py trigger_dev`` on SQLite with no Redis or broker server.

The example project runs in a subprocess exactly as the README's demo command runs
it; runs are triggered from a separate ``manage.py shell`` process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, Process, wait_for

pytestmark = pytest.mark.integration
PROJECT = ROOT / "example_project"

TRIGGER_AND_WAIT = """
import json, time
from demo.tasks import hello_world, send_invoice, async_fetch
from trigger_celery import runs
handles = [
    hello_world.trigger({"message": "from the shell"}),
    send_invoice.trigger({"customer": "ACME", "amount_cents": 1234}),
    async_fetch.trigger({"url": "https://example.org"}),
]
deadline = time.time() + 60
while time.time() < deadline:
    records = [runs.retrieve(h) for h in handles]
    if all(r.is_completed for r in records):
        break
    time.sleep(0.1)
print("RESULT " + json.dumps([[r.task_identifier, r.status, r.output] for r in records]))
from trigger_celery import schedules
declared = [(s.task, s.cron, s.next_run is not None) for s in schedules.list(declarative=True)]
print("SCHEDULES " + json.dumps(declared))
"""


def _manage(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_trigger_dev_runs_dashboard_worker_and_scheduler_without_services(tmp_path: Path):
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
    port = _free_port()
    dev = Process(
        "trigger-dev",
        [sys.executable, "manage.py", "trigger_dev", f"127.0.0.1:{port}"],
        tmp_path,
        env,
        cwd=PROJECT,
        test_settings=False,
    )
    try:
        wait_for(lambda: "ready." in dev.log() or not dev.alive(), timeout=60, what="trigger_dev")
        assert dev.alive(), dev.log()
        out = _manage(["shell", "-c", TRIGGER_AND_WAIT], env)
        result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
        assert result == [
            ["hello-world", "COMPLETED", {"message": "from the shell", "attempt": 1}],
            ["send-invoice", "COMPLETED", {"sent_to": "ACME", "total": "12.34 EUR"}],
            ["async-fetch", "COMPLETED", {"fetched": "https://example.org"}],
        ]
        # The worker synced the schedule the demo declares in code.
        assert json.loads(out.split("SCHEDULES ", 1)[1]) == [["heartbeat", "* * * * *", True]]
        # The dashboard answers (anonymous users are sent to log in).
        request = urllib.request.Request(f"http://127.0.0.1:{port}/trigger/")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            opener.open(request, timeout=10)
            status = 200
        except urllib.error.HTTPError as err:
            status = err.code
        assert status == 302
        # Static files are served as runserver serves them: the admin and the dashboard
        # have their stylesheets and script.
        for path in (
            "/static/admin/css/base.css",
            "/static/trigger_celery/dashboard.css",
            "/static/trigger_celery/dashboard.js",
        ):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
                assert answer.status == 200, path
                assert len(answer.read()) > 500, path
    finally:
        dev.stop()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None
