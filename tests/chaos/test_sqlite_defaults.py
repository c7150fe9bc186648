"""A new Django project's SQLite settings, under concurrent writers: no error reaches a user.

Its own SQLite file, on both legs of the suite: the worker, the beat and the driver
process all use the database exactly as ``startproject`` configures it.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.harness import ROOT, _env, start_beat, start_worker


def test_debounce_batches_and_waits_on_django_default_sqlite(own, log_dir, tmp_path):
    env = {"TC_SQLITE_DEFAULTS": str(tmp_path / "fresh.sqlite3"), "TC_ENVIRONMENT": "STAGING"}
    migrate = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0"],
        env=_env(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr
    own.procs.append(start_worker(log_dir, name="default-sqlite-worker", concurrency=4, env=env))
    own.procs.append(start_beat(log_dir, name="default-sqlite-beat", env=env))
    driver = subprocess.run(
        [sys.executable, "tests/chaos/sqlite_defaults_driver.py", "180"],
        env=_env(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert driver.returncode == 0, driver.stderr[-4000:]
    report = json.loads(driver.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    assert report["pending"] == []
    assert report["debounced_runs"] == 1  # 50 concurrent triggers, one key, one run
    parents = [v for v in report["final"].values() if v[0] == "sqlite-parent"]
    assert len(parents) == 8
    assert all(
        status == "COMPLETED" and output == [0, 1, 2, 3, 4, 5] for _, status, output in parents
    )
    for name in ("default-sqlite-worker", "default-sqlite-beat"):
        log = (log_dir / f"{name}.log").read_text()
        # The process names the OPTIONS these defaults lack (check W004, whose advice
        # quotes the error); that error itself never happened.
        assert "trigger_celery.W004" in log
        errors = [line for line in log.splitlines() if "trigger_celery.W004" not in line]
        assert not [line for line in errors if "database is locked" in line], log[-4000:]
