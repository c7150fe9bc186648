"""A project made by ``django-admin startproject`` with only what the README adds for the
embedded default (no REDIS_URL, no broker): ``trigger_dev`` and a ``manage.py shell``
in another process run a task, with no service at all (SPEC 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.harness import Process, wait_for
from tests.integration.test_embedded_dev import _free_port

pytestmark = pytest.mark.integration

SETTINGS = """
INSTALLED_APPS += ["django_celery_beat", "trigger_celery", "shop"]
TRIGGER_CELERY = {"ENVIRONMENT": "DEVELOPMENT"}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULER = "trigger_celery.beat:Scheduler"
"""

CELERY_APP = """
import os
from celery import Celery
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
"""

TASKS = """
from trigger_celery import task

@task(id="add")
def add(payload, ctx):
    return payload["a"] + payload["b"]
"""

TRIGGER = """
import json, time
from celery import current_app
from shop.tasks import add
from trigger_celery import runs
handle = add.trigger({"a": 2, "b": 3})
deadline = time.time() + 60
while time.time() < deadline and not runs.retrieve(handle).is_completed:
    time.sleep(0.1)
run = runs.retrieve(handle)
conf = current_app.conf
print("RESULT " + json.dumps([conf.broker_url, conf.broker_transport, run.status, run.output]))
"""


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _new_project(tmp_path: Path, settings: str) -> tuple[Path, dict[str, str]]:
    """``startproject`` with the README's settings (``settings``) and ``proj/celery.py``,
    and an environment without this suite's own settings; the project's root and that
    environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TC_", "REDIS", "PG", "DJANGO_SETTINGS", "CELERY_"))
    }
    root = tmp_path / "site"
    root.mkdir()
    _run([sys.executable, "-m", "django", "startproject", "proj", "."], root, env)
    with open(root / "proj" / "settings.py", "a") as file:
        file.write(settings)
    (root / "proj" / "celery.py").write_text(textwrap.dedent(CELERY_APP))
    return root, env


def test_a_fresh_project_needs_no_broker_on_the_embedded_default(tmp_path: Path):
    root, env = _new_project(tmp_path, SETTINGS)
    (root / "proj" / "__init__.py").write_text("from .celery import app as celery_app\n")
    (root / "shop").mkdir()
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "tasks.py").write_text(TASKS)
    _run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], root, env)

    port = _free_port()
    dev = Process(
        "fresh-trigger-dev",
        [sys.executable, "manage.py", "trigger_dev", f"127.0.0.1:{port}"],
        tmp_path,
        env,
        cwd=root,
        test_settings=False,
    )
    try:
        wait_for(lambda: "ready." in dev.log() or not dev.alive(), timeout=60, what="trigger_dev")
        assert dev.alive(), dev.log()
        assert "amqp://" not in dev.log()  # not Celery's default broker
        assert "No hostname was supplied" not in dev.log()  # a folder has no host
        out = _run([sys.executable, "manage.py", "shell", "-c", TRIGGER], root, env)
    finally:
        dev.stop()
    broker, transport, status, output = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    assert (broker, status, output) == ("filesystem://", "COMPLETED", 5)
    assert transport == "trigger_celery.default_broker:EmbeddedTransport"
    assert (root / ".trigger_celery" / "broker").is_dir()  # under BASE_DIR


def test_manage_py_check_warns_when_the_projects_celery_app_is_not_loaded(tmp_path: Path):
    # The README's proj/__init__.py line forgotten: trigger() would send runs with
    # Celery's fallback app (RabbitMQ on localhost), not the broker the settings name.
    broker = 'CELERY_BROKER_URL = "redis://127.0.0.1:1/0"\n'
    root, env = _new_project(tmp_path, SETTINGS.replace('"shop"', "") + broker)
    check = [sys.executable, "manage.py", "check"]
    forgotten = subprocess.run(check, cwd=root, env=env, capture_output=True, text=True)
    assert "trigger_celery.W015" in forgotten.stderr + forgotten.stdout
    assert "in proj/__init__.py, 'from .celery import app as celery_app'" in forgotten.stderr
    (root / "proj" / "__init__.py").write_text("from .celery import app as celery_app\n")
    loaded = subprocess.run(check, cwd=root, env=env, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert "W015" not in loaded.stdout + loaded.stderr
    # runserver runs the checks in a thread of its own, where Celery's current app is
    # the fallback even with the project's app loaded: no warning there either.
    in_a_thread = (
        "import threading; from django.core.management import call_command; "
        "t = threading.Thread(target=call_command, args=('check',)); t.start(); t.join()"
    )
    threaded = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", in_a_thread],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert threaded.returncode == 0, threaded.stdout + threaded.stderr
    assert "System check identified" in threaded.stdout + threaded.stderr  # it ran
    assert "W015" not in threaded.stdout + threaded.stderr
