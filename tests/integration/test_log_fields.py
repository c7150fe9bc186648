"""Worker log lines of a run carry the run id, task and attempt as record fields."""

from __future__ import annotations

import json
import os

import pytest

from tests.integration.harness import finished, wait_for
from trigger_celery import tasks

pytestmark = pytest.mark.integration


def test_a_runs_log_records_carry_run_id_task_and_attempt(own, tmp_path):
    path = tmp_path / "worker-log.jsonl"
    own.worker(env={"TC_JSON_LOG": str(path)})
    own.beat()
    handle = tasks.trigger("hello-world", {"message": "fields"})
    plain = tasks.trigger("logs-plainly", {})
    finished(handle)
    finished(plain)

    def lines():
        if not os.path.exists(path):
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    ours = wait_for(
        lambda: [x for x in lines() if x.get("trigger_run_id") == handle.id],
        what="log lines of the run",
    )
    assert {(x["trigger_task_id"], x["trigger_attempt"]) for x in ours} == {("hello-world", 1)}
    assert any("hello" in x["message"] for x in ours)
    [own_line] = wait_for(
        lambda: [x for x in lines() if x["logger"] == "tests.plain"], what="the plain line"
    )
    # The project's own extra={"run_id": ...} still works beside our fields.
    assert own_line["extra_run_id"] == "mine"
    assert own_line["trigger_run_id"] == plain.id
    assert own_line["trigger_task_id"] == "logs-plainly"
    # Lines outside any run have no run fields.
    assert any(x.get("trigger_run_id") is None for x in lines())
