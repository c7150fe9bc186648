"""Hooks get the payload, on_resume errors are recorded, tags filter one way everywhere,
and a tasks module that fails to import is named, not hidden."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from tests.integration.harness import finished, start_worker, wait_for
from tests.taskapp import events
from trigger_celery import runs, tasks
from trigger_celery.models import LogEntry, Run

ROOT = Path(__file__).resolve().parents[2]


def test_on_success_and_on_complete_receive_the_payload(live):
    handle = tasks.trigger("payload-hooks", {"order": 7})
    assert finished(handle).status == "COMPLETED"
    key = f"payload-hooks:{handle.id}"
    wait_for(lambda: len(events.values(key)) == 2, what="both hooks")
    assert events.values(key) == [["on_success", {"order": 7}], ["on_complete", {"order": 7}]]


def test_on_failure_and_on_complete_receive_the_payload_of_a_failed_run(live):
    handle = tasks.trigger("payload-hooks", {"fail": True})
    assert finished(handle).status == "FAILED"
    key = f"payload-hooks:{handle.id}"
    wait_for(lambda: len(events.values(key)) == 2, what="both hooks")
    assert events.values(key) == [
        ["on_failure", {"fail": True}],
        ["on_complete", {"fail": True}],
    ]


@pytest.mark.parametrize("fail", [False, True])
def test_on_complete_naming_output_and_error_gets_both_either_way(live, fail):
    # README: a hook takes the keyword arguments it names, output and error among them.
    handle = tasks.trigger("complete-names-both", {"fail": fail})
    assert finished(handle).status == ("FAILED" if fail else "COMPLETED")
    key = f"complete-both:{handle.id}"
    wait_for(lambda: events.values(key), what="on_complete")
    output, error = events.values(key)[0]
    if fail:
        assert output is None
        assert error == "asked to fail"
    else:
        assert (output, error) == ("done", None)
    assert not LogEntry.objects.filter(run_id=handle.id, level="ERROR").exists()


def test_an_error_in_on_resume_is_recorded_not_an_attempt_failure(live):
    handle = tasks.trigger("broken-on-resume", {})
    run = finished(handle)
    assert events.values(f"broken-resume:{handle.id}") == [1]  # the hook did run, and raised
    assert run.status == "COMPLETED"
    assert run.output == "resumed anyway"
    assert [(a.number, a.status) for a in run.attempts] == [(1, "COMPLETED")]
    logged = LogEntry.objects.filter(run_id=handle.id, level="ERROR")
    assert [line.message for line in logged] == [
        "on_resume hook failed: RuntimeError('on_resume is broken')"
    ]


@pytest.mark.django_db
def test_runs_list_and_the_admin_tag_filter_agree_on_non_ascii_tags(admin_client):
    def make(run_id: str, tags: list[str]) -> None:
        Run.objects.create(
            id=run_id, task_identifier="hello-world", status="COMPLETED", environment="PRODUCTION",
            queue="hello-world", max_attempts=1, tags=tags,
        )  # fmt: skip

    make("run_tag_accented", ["café", "x"])
    make("run_tag_capital", ["Café"])
    make("run_tag_plain", ["cafe"])
    make("run_tag_japanese", ["日本"])
    make("run_tag_substring", ["cafés"])

    assert [r.id for r in runs.list(tag="café")] == ["run_tag_accented"]
    assert [r.id for r in runs.list(tag="日本")] == ["run_tag_japanese"]
    assert [r.id for r in runs.list(tag="cafe")] == ["run_tag_plain"]
    # A list of tags matches runs carrying any of them (as a list of statuses does).
    either = {r.id for r in runs.list(tag=["日本", "cafe", "nowhere"])}
    assert either == {"run_tag_japanese", "run_tag_plain"}

    page = admin_client.get(reverse("admin:trigger_celery_run_changelist"), {"tag": "café"})
    assert page.status_code == 200
    shown = {rid for rid in ("run_tag_accented", "run_tag_capital", "run_tag_plain",
                             "run_tag_japanese", "run_tag_substring") if rid in page.content.decode()}  # fmt: skip
    assert shown == {"run_tag_accented"}


def _env_with_broken_app() -> dict[str, str]:
    return dict(os.environ, TC_EXTRA_APPS="tests.brokenapp", PYTHONPATH=str(ROOT))


def test_a_tasks_module_that_fails_to_import_is_named_by_manage_py_check():
    result = subprocess.run(
        [sys.executable, "-m", "django", "check", "--settings=tests.settings"],
        env=_env_with_broken_app(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "trigger_celery.E013" in result.stderr
    assert "importing tests.brokenapp.tasks failed" in result.stderr
    assert "tests.brokenapp.no_such_module" in result.stderr


def test_a_tasks_module_that_fails_to_import_is_named_in_the_worker_log(own, log_dir):
    try:
        worker = start_worker(
            log_dir, name="broken-app-worker", env={"TC_EXTRA_APPS": "tests.brokenapp"}
        )
    except RuntimeError:
        pass  # Celery's own autodiscovery refuses to start the worker: fine, if it says why
    else:
        own.procs.append(worker)
    log = (log_dir / "broken-app-worker.log").read_text()
    assert "could not import tests.brokenapp.tasks" in log
    assert "No module named 'tests.brokenapp.no_such_module'" in log


def test_a_trigger_init_module_that_fails_to_import_stops_the_worker_naming_it(own, log_dir):
    # README: global hooks and middleware live in trigger_init.py; a worker that started
    # without them would run every task without the project's middleware, saying nothing.
    with pytest.raises(RuntimeError, match="exited"):
        own.procs.append(
            start_worker(
                log_dir, name="broken-init-worker", env={"TC_EXTRA_APPS": "tests.brokeninit"}
            )
        )
    log = (log_dir / "broken-init-worker.log").read_text()
    assert "trigger_celery cannot start: importing tests.brokeninit.trigger_init failed" in log
    assert "No module named 'tests.brokeninit.no_such_module'" in log
