"""OpenTelemetry: a trigger's span is the parent of its attempts' spans, across the gap
between the process that triggers and the worker that runs; runs triggered inside an
attempt nest under it. Real prefork workers set the SDK up per process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor

from tests import otel_spans
from tests.integration.harness import _env, finished, wait_for
from tests.taskapp import (
    events,
    scheduled,  # noqa: F401  (defines the schedules.task tasks)
)
from trigger_celery import schedules, tasks
from trigger_celery.core import clock
from trigger_celery.engine.schedules import ScheduleTicker
from trigger_celery.models import Schedule

pytestmark = pytest.mark.integration


@pytest.fixture
def traced(own, tmp_path):
    otel_spans.install()  # this process: the SDK's in-memory exporter
    otel_spans.memory.clear()
    path = str(tmp_path / "worker-spans.jsonl")
    own.worker(env={"TC_OTEL_SPANS": path})
    own.beat(env={"TC_OTEL_SPANS": path})
    return path


def _spans(path: str, count: int) -> list[dict]:
    return wait_for(
        lambda: (found := otel_spans.read(path)) and len(found) >= count and found,
        what=f"{count} spans from the worker",
    )


def _here(name: str) -> dict:
    [span] = [
        otel_spans.as_dict(s) for s in otel_spans.memory.get_finished_spans() if s.name == name
    ]
    return span


def test_attempt_span_is_a_child_of_the_trigger_span_and_child_runs_nest(traced):
    handle = tasks.trigger("trace-parent", {})
    child_id = finished(handle).output
    finished(child_id)
    trigger = _here("trigger trace-parent")
    assert trigger["kind"] == "PRODUCER"
    assert trigger["attributes"]["trigger_celery.run_id"] == handle.id

    spans = {s["name"]: s for s in _spans(traced, 3)}
    attempt = spans["run trace-parent"]
    assert attempt["kind"] == "CONSUMER"
    assert attempt["trace_id"] == trigger["trace_id"]
    assert attempt["parent_id"] == trigger["span_id"]
    assert attempt["attributes"] == {
        "trigger_celery.run_id": handle.id,
        "trigger_celery.task": "trace-parent",
        "trigger_celery.attempt": 1,
        "trigger_celery.queue": "trace-parent",
        "trigger_celery.outcome": "Completed",
    }
    child_trigger = spans["trigger echo"]
    assert child_trigger["parent_id"] == attempt["span_id"]
    assert child_trigger["attributes"]["trigger_celery.run_id"] == child_id
    child_attempt = wait_for(
        lambda: {s["name"]: s for s in otel_spans.read(traced)}.get("run echo"),
        what="the child's attempt span",
    )
    assert child_attempt["parent_id"] == child_trigger["span_id"]
    assert child_attempt["trace_id"] == trigger["trace_id"]


def test_a_batch_is_one_producer_span_and_its_runs_attempts_hang_from_it(traced):
    batch = tasks.batch_trigger("hello-world", [{"payload": {"message": m}} for m in "ab"])
    for handle in batch.runs:
        finished(handle)
    trigger = _here("trigger batch")
    assert trigger["kind"] == "PRODUCER"
    assert trigger["attributes"]["trigger_celery.batch_id"] == batch.id
    assert trigger["attributes"]["trigger_celery.run_count"] == 2
    attempts = [s for s in _spans(traced, 2) if s["name"] == "run hello-world"]
    assert {s["attributes"]["trigger_celery.run_id"] for s in attempts} == {
        h.id for h in batch.runs
    }
    assert {s["parent_id"] for s in attempts} == {trigger["span_id"]}
    assert {s["trace_id"] for s in attempts} == {trigger["trace_id"]}


def test_a_canceled_attempt_says_canceled_and_is_not_an_error(traced):
    from trigger_celery import runs

    handle = tasks.trigger("cooperative", {})
    wait_for(lambda: events.values(f"started:{handle.id}"), what="the run to start")
    runs.cancel(handle)  # the function returns on the signal
    [span] = wait_for(
        lambda: [s for s in otel_spans.read(traced) if s["name"] == "run cooperative"],
        what="the attempt's span",
    )
    assert span["attributes"]["trigger_celery.outcome"] == "Canceled"
    assert span["status"] != "ERROR"


def test_every_retry_is_a_span_under_the_same_trigger_and_failures_are_errors(traced):
    handle = tasks.trigger("always-fails", {})
    finished(handle)
    trigger = _here("trigger always-fails")
    attempts = [s for s in _spans(traced, 3) if s["name"] == "run always-fails"]
    assert sorted(s["attributes"]["trigger_celery.attempt"] for s in attempts) == [1, 2, 3]
    assert {s["parent_id"] for s in attempts} == {trigger["span_id"]}
    assert {s["status"] for s in attempts} == {"ERROR"}


def test_an_attempt_whose_process_was_killed_has_a_crashed_span_under_the_trigger(traced):
    """SIGKILL (the OOM killer) leaves no span to export; the process that finds the
    crash records the attempt's span, an error saying Crashed, beside the retry's."""
    handle = tasks.trigger("dies", {"die_on": [1]})
    assert finished(handle, timeout=90).status == "COMPLETED"
    trigger = _here("trigger dies")
    attempts = wait_for(
        lambda: (
            len(found := [s for s in otel_spans.read(traced) if s["name"] == "run dies"]) >= 2
            and found
        ),
        what="the spans of both attempts",
    )
    by_number = {s["attributes"]["trigger_celery.attempt"]: s for s in attempts}
    assert sorted(by_number) == [1, 2]
    crashed, survived = by_number[1], by_number[2]
    assert crashed["attributes"]["trigger_celery.outcome"] == "Crashed"
    assert crashed["attributes"]["trigger_celery.run_id"] == handle.id
    assert crashed["status"] == "ERROR"
    assert crashed["kind"] == "CONSUMER"
    assert survived["attributes"]["trigger_celery.outcome"] == "Completed"
    for span in (crashed, survived):
        assert span["parent_id"] == trigger["span_id"]
        assert span["trace_id"] == trigger["trace_id"]


def test_a_resumed_attempt_killed_has_a_crashed_span_from_its_resume_not_its_first_start(
    traced,
):
    """Attempt 1 suspends (its span ends Suspended), resumes in a new span, and its process
    is killed: the crashed span recorded for it covers the resumed execution only."""
    handle = tasks.trigger("resumes-then-hangs", {"seconds": 4})  # long enough to suspend
    [(number, pid)] = wait_for(
        lambda: events.values(f"resumed-pid:{handle.id}"), what="attempt 1 to resume"
    )
    assert number == 1
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _gone(pid), what=f"the killed process {pid} to be gone")
    run = finished(handle, timeout=90)
    assert [(a.number, a.status) for a in run.attempts] == [(1, "CRASHED"), (2, "COMPLETED")]

    def first_attempt_spans():
        found = [
            s
            for s in otel_spans.read(traced)
            if s["name"] == "run resumes-then-hangs"
            and s["attributes"]["trigger_celery.attempt"] == 1
        ]
        return len(found) >= 2 and found

    spans = wait_for(first_attempt_spans, what="the suspended and the crashed span")
    by_outcome = {s["attributes"]["trigger_celery.outcome"]: s for s in spans}
    assert sorted(by_outcome) == ["Crashed", "Suspended"] and len(spans) == 2
    suspended, crashed = by_outcome["Suspended"], by_outcome["Crashed"]
    assert crashed["status"] == "ERROR"
    assert suspended["end"] <= crashed["start"] < crashed["end"]


def _gone(pid: int) -> bool:
    """The process has exited (reaped, or a zombie its parent has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_wait_is_one_span_under_the_attempt_that_continues_after_it(traced):
    short = tasks.trigger("sleeper", {"seconds": 1})  # waits in the worker
    long = tasks.trigger("sleeper", {"seconds": 4})  # suspends, then resumes
    finished(short)
    finished(long)
    for handle, attempt_spans in ((short, 1), (long, 2)):
        spans = wait_for(
            lambda h=handle: [
                s
                for s in otel_spans.read(traced)
                if s["attributes"].get("trigger_celery.run_id") == h.id
            ],
            what="spans of the run",
        )
        runs_ = [s for s in spans if s["name"] == "run sleeper"]
        waits = [s for s in spans if s["name"] == "wait datetime"]
        assert len(runs_) == attempt_spans  # a resume continues attempt 1 in a new span
        assert {s["attributes"]["trigger_celery.attempt"] for s in runs_} == {1}
        assert len(waits) == 1
        assert waits[0]["parent_id"] == runs_[-1]["span_id"]
        assert waits[0]["attributes"]["trigger_celery.wait_step"] == 0


def test_with_celerys_instrumentation_on_the_attempt_keeps_its_parent_and_links_celerys_span(
    own, tmp_path
):
    otel_spans.install()
    otel_spans.memory.clear()
    path = str(tmp_path / "worker-spans.jsonl")
    own.worker(env={"TC_OTEL_SPANS": path, "TC_OTEL_CELERY": "1"})
    own.beat()
    handle = tasks.trigger("hello-world", {"message": "both"})
    finished(handle)
    trigger = _here("trigger hello-world")

    def both():
        spans = otel_spans.read(path)
        ours = [s for s in spans if s["name"] == "run hello-world"]
        # The task span of the message that ran ours encloses it; the worker may have
        # run other messages too (a run beat fired), each with its own.
        enclosing = [
            s
            for s in spans
            if s["name"] == "run/trigger_celery.execute_run"
            and ours
            and s["start"] <= ours[0]["start"]
            and s["end"] >= ours[0]["end"]
        ]
        return ours and enclosing and (ours, enclosing)

    # Celery's span (made only when its instrumentation is on) ends after ours.
    ours, enclosing = wait_for(both, what="our attempt span and Celery's task span")
    assert len(ours) == 1
    assert ours[0]["parent_id"] == trigger["span_id"]
    assert ours[0]["trace_id"] == trigger["trace_id"]
    assert ours[0]["links"] == [enclosing[0]["span_id"]]


def test_an_attempt_whose_process_is_ended_still_exports_its_span(own, tmp_path):
    """A run that ignores its stop (it swallows it); the monitor ends the pool process
    (a real exit), and the attempt's span is ended and exported before it goes."""
    otel_spans.install()
    path = str(tmp_path / "worker-spans.jsonl")
    worker = own.worker(env={"TC_OTEL_SPANS": path})
    own.beat()
    handle = tasks.trigger("ignores-its-stop", {"seconds": 60}, max_duration=5)
    run = finished(handle, timeout=60)
    assert run.status == "TIMED_OUT"
    assert "ignored its stop" in worker.log()  # the process was ended, not interrupted
    span = wait_for(
        lambda: {s["name"]: s for s in otel_spans.read(path)}.get("run ignores-its-stop"),
        what="the ended attempt's span",
    )
    assert span["attributes"]["trigger_celery.run_id"] == handle.id
    assert span["attributes"]["trigger_celery.outcome"] == "TimedOut"
    assert span["status"] == "ERROR"


def _trigger_in_a_process_without_tracing(task_id: str) -> str:
    """A shell, or a web process with no SDK: the run's row gets no trace context."""
    code = (
        "import django; django.setup()\n"
        "from trigger_celery import tasks\n"
        f"print(tasks.trigger({task_id!r}, {{}}).id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_run_triggered_where_nothing_traces_is_still_one_trace(traced):
    """Its first execution records a stand-in trigger span and keeps its context on the
    row: the retries and the resumed execution join that trace, not one trace each."""
    failing = _trigger_in_a_process_without_tracing("always-fails")
    waiting = _trigger_in_a_process_without_tracing("waits-a-while")
    assert finished(failing).status == "FAILED"
    assert finished(waiting).status == "COMPLETED"

    def spans_of(run_id: str, count: int) -> list[dict]:
        return wait_for(
            lambda: (
                len(
                    found := [
                        s
                        for s in otel_spans.read(traced)
                        if s["attributes"].get("trigger_celery.run_id") == run_id
                    ]
                )
                >= count
                and found
            ),
            what=f"{count} spans of {run_id}",
        )

    # always-fails: three attempts; waits-a-while: one that suspends, one that resumes.
    for run_id, task_id, executions in (
        (failing, "always-fails", 3),
        (waiting, "waits-a-while", 2),
    ):
        spans = spans_of(run_id, executions + 1)
        [trigger] = [s for s in spans if s["name"] == f"trigger {task_id}"]
        assert trigger["kind"] == "PRODUCER" and trigger["parent_id"] is None
        runs_ = [s for s in spans if s["name"] == f"run {task_id}"]
        assert len(runs_) == executions
        assert {s["trace_id"] for s in runs_} == {trigger["trace_id"]}
        assert {s["parent_id"] for s in runs_} == {trigger["span_id"]}


def test_a_scheduled_run_has_the_trigger_span_of_the_tick_that_fired_it(own, tmp_path):
    """A tick built its run with no span open, so the row had no context: every
    execution of a scheduled run was a trace of its own, with no trigger."""
    otel_spans.install()  # this process fires the tick, as a traced beat does
    otel_spans.memory.clear()
    path = str(tmp_path / "worker-spans.jsonl")
    own.worker(env={"TC_OTEL_SPANS": path})  # no beat: the test drives the tick
    s = schedules.create(task="sched-record", cron="* * * * *", deduplication_key=uuid.uuid4().hex)
    tick = clock.now().replace(second=0, microsecond=0) - timedelta(minutes=1)
    Schedule.objects.filter(id=s.id).update(next_tick_at=tick)
    [fired] = ScheduleTicker().tick()
    assert finished(fired.run_id).status == "COMPLETED"

    trigger = _here("trigger sched-record")
    assert trigger["kind"] == "PRODUCER"
    assert trigger["attributes"]["trigger_celery.schedule_id"] == s.id
    assert trigger["attributes"]["trigger_celery.run_id"] == fired.run_id
    [attempt] = [x for x in _spans(path, 1) if x["name"] == "run sched-record"]
    assert attempt["parent_id"] == trigger["span_id"]
    assert attempt["trace_id"] == trigger["trace_id"]


class _InTransaction(SpanProcessor):
    """A span processor that notes, for each span ended, whether this process was inside
    a database transaction then (a synchronous exporter runs right there)."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, bool]] = []
        self.active = True

    def on_end(self, span) -> None:
        if self.active:
            self.ended.append((span.name, connection.in_atomic_block))


def test_a_ticks_span_is_exported_once_its_run_commits_and_not_for_a_tick_that_lost(
    fresh_store,
):
    """The tick's span ended inside the tick's transaction: a synchronous exporter ran
    while beat held the write (SQLite's whole-database lock), and a tick that lost to
    another beat exported a span naming a run that was never written."""
    otel_spans.install()
    otel_spans.memory.clear()
    seen = _InTransaction()
    trace.get_tracer_provider().add_span_processor(seen)
    try:
        key = uuid.uuid4().hex
        s = schedules.create(task="sched-record", cron="* * * * *", deduplication_key=key)
        tick = clock.now().replace(second=0, microsecond=0) - timedelta(minutes=1)
        Schedule.objects.filter(id=s.id).update(next_tick_at=tick)
        [fired] = ScheduleTicker().tick()
        assert fired.run_id
        # Another beat that read the row before this one's write fires the same tick:
        # its run's insert meets the tick's unique key.
        Schedule.objects.filter(id=s.id).update(next_tick_at=tick)
        [lost] = ScheduleTicker().tick()
        assert lost.run_id is None and lost.skipped == "this tick already has its run"
    finally:
        seen.active = False
    assert seen.ended == [("trigger sched-record", False)]
    assert _here("trigger sched-record")["attributes"]["trigger_celery.run_id"] == fired.run_id
