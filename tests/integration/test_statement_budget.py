"""How many SQL statements a trigger and an attempt cost: a later change cannot add
round trips without this test saying so (issue: a recorded run costs little more than a
plain Celery task)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from celery import current_app
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from trigger_celery import tasks
from trigger_celery.core import tracing
from trigger_celery.engine.compiled_sql import KeepFirst
from trigger_celery.models import Run
from trigger_celery.worker.attempt import execute

# A run whose queue has room takes its slot in the store first and is written DEQUEUED:
# one INSERT. The start and the end of the attempt are one statement each on PostgreSQL
# (data-modifying CTEs); SQLite writes the attempt row beside the run row inside
# BEGIN ... COMMIT.
TRIGGER_BUDGET = {"postgresql": 1, "sqlite": 1}
# Inside a caller's transaction: the INSERT, and after the commit the dequeue UPDATE.
QUEUED_TRIGGER_BUDGET = 2
ATTEMPT_BUDGET = {"postgresql": 2, "sqlite": 9}


@pytest.fixture(autouse=True)
def untraced(monkeypatch):
    """The budgets are the default set-up's, with no OpenTelemetry SDK. The SDK cannot be
    taken back out of a process once set (test_tracing sets one), so say it is absent."""
    monkeypatch.setattr(tracing, "enabled", lambda: False)


def statements(block) -> list[str]:  # type: ignore[no-untyped-def]
    with CaptureQueriesContext(connection) as captured:
        block()
    return [q["sql"] for q in captured.captured_queries]


def test_a_trigger_and_an_attempt_stay_within_their_statement_budgets(own):
    # No worker and no beat (``own`` with nothing started): this process runs the attempt.
    tasks.trigger("quiet", {"warm": True})  # queue limits pushed, connections open
    handles = []
    trigger_sql = statements(lambda: handles.append(tasks.trigger("quiet", {"i": 1})))
    run = Run.objects.get(id=handles[0].id)
    assert run.status == "DEQUEUED"  # a free slot: claimed and sent at once
    current_app.control.purge()  # the message nobody consumes
    outcome = []
    attempt_sql = statements(
        lambda: outcome.append(execute(run.id, run.attempt_count + 1, worker="budget"))
    )
    assert outcome == ["Completed"]
    assert Run.objects.get(id=run.id).status == "COMPLETED"

    vendor = connection.vendor
    print(f"{vendor}: trigger {len(trigger_sql)}, attempt {len(attempt_sql)} statements")
    assert len(trigger_sql) <= TRIGGER_BUDGET[vendor], trigger_sql
    assert len(attempt_sql) <= ATTEMPT_BUDGET[vendor], attempt_sql


def test_a_trigger_inside_a_transaction_is_queued_then_dispatched_after_the_commit(own):
    tasks.trigger("quiet", {"warm": True})
    handles = []

    def in_a_transaction() -> None:
        with transaction.atomic():
            handles.append(tasks.trigger("quiet", {"i": 1}))
            assert Run.objects.get(id=handles[0].id).status == "QUEUED"

    trigger_sql = statements(in_a_transaction)
    assert Run.objects.get(id=handles[0].id).status == "DEQUEUED"
    writes = [sql for sql in trigger_sql if sql.startswith(("INSERT", "UPDATE"))]
    assert len(writes) <= QUEUED_TRIGGER_BUDGET, trigger_sql


RELAX = "set_config('synchronous_commit', 'off', true)"


def test_only_the_repairable_steps_skip_the_wal_flush(own):
    """The dispatch and the start of an attempt may commit without waiting for the WAL
    flush (a database crash only undoes steps the engine repeats); the trigger's row and
    the final state wait for it. Inside a caller's transaction nothing is relaxed."""
    tasks.trigger("quiet", {"warm": True})
    handles = []
    trigger_sql = statements(lambda: handles.append(tasks.trigger("quiet", {"i": 1})))
    run = Run.objects.get(id=handles[0].id)
    current_app.control.purge()
    attempt_sql = statements(lambda: execute(run.id, run.attempt_count + 1, worker="budget"))
    assert Run.objects.get(id=run.id).status == "COMPLETED"

    # A trigger queued inside a transaction is dispatched after it commits.
    def in_a_transaction() -> None:
        with transaction.atomic():
            handles.append(tasks.trigger("quiet", {"i": 2}))

    queued_sql = [q for q in statements(in_a_transaction) if q.startswith(("INSERT", "UPDATE"))]
    relaxed = [RELAX in sql for sql in trigger_sql + attempt_sql + queued_sql]
    insert, dispatch = queued_sql[0], queued_sql[-1]
    assert trigger_sql[0].startswith("INSERT") and insert.startswith("INSERT")
    if connection.vendor == "postgresql":
        # INSERT (flushed); start (relaxed), complete (flushed); INSERT (flushed) and
        # the dequeue after the commit (relaxed).
        assert relaxed == [False, True, False, False, True], trigger_sql + attempt_sql + queued_sql
        assert dispatch.startswith("UPDATE") and "RETURNING" in dispatch
    else:
        assert not any(relaxed)  # SQLite has no such setting
    with transaction.atomic():
        assert statements_relax_inside_atomic() == "NULL"


def statements_relax_inside_atomic() -> str:
    from trigger_celery.engine import statements as engine_statements

    return engine_statements.relaxed_commit_sql()


def _orm_update_sql(model, where, values):  # type: ignore[no-untyped-def]
    from django.db.models.sql import UpdateQuery

    query = model._default_manager.filter(**where).query.chain(UpdateQuery)
    query.add_update_values(values)
    sql, params = query.get_compiler(connection=connection).as_sql()
    return sql, tuple(params)


@pytest.mark.parametrize(
    ("where", "values"),
    [
        (
            {"id": "run_a", "status__in": ["EXECUTING"], "attempt_count": 1},
            {"status": "COMPLETED", "output": {"x": [1, "é"]}, "error": None, "execution_ms": 5},
        ),
        (
            {"id": "run_b", "status__in": ["QUEUED", "DELAYED"], "started_at__isnull": True},
            {"status": "EXPIRED", "error": {"type": "EXPIRED"}, "idempotency_key": None},
        ),
        ({"run_id": "run_c", "number": 2}, {"status": "COMPLETED", "finished_at": None}),
        (
            {"id": "run_d", "status": "DEQUEUED", "attempt_count": 0},
            {
                "status": "EXECUTING",
                "started_at": KeepFirst("started_at", datetime(2026, 1, 2, tzinfo=UTC)),
            },
        ),
    ],
)
def test_a_cached_update_is_what_the_orm_compiles(db, where, values):
    """compiled_sql keeps an UPDATE's text per shape: with other values of the same
    shape, its text and parameters must equal a fresh compile's."""
    from trigger_celery.core import clock
    from trigger_celery.engine.compiled_sql import _cache, _same, _shape, update_sql
    from trigger_celery.models import Attempt

    model = Attempt if "run_id" in where else Run
    values = {**values, "updated_at": clock.now()} if model is Run else values
    update_sql(model, where, values)  # the first call compiles and proves the shape
    assert (connection.vendor, _shape(model, where, values)) in _cache  # the fast way is used
    other_where = {k: (v + "x" if isinstance(v, str) else v) for k, v in where.items()}
    other_values = {k: ({"changed": True} if isinstance(v, dict) else v) for k, v in values.items()}
    cached_sql, cached_params = update_sql(model, other_where, other_values)
    orm_sql, orm_params = _orm_update_sql(model, other_where, other_values)
    assert cached_sql == orm_sql
    assert _same(cached_params, orm_params), (cached_params, orm_params)


def test_an_expression_is_compiled_every_time(db):
    from django.db.models import F

    from trigger_celery.engine import compiled_sql

    where = {"id": "run_f", "status__in": ["EXECUTING"]}
    values = {"attempt_count": F("attempt_count") - 1}
    before = len(compiled_sql._cache)
    sql, params = compiled_sql.update_sql(Run, where, values)
    assert (sql, params) == _orm_update_sql(Run, where, values)
    assert len(compiled_sql._cache) == before


def test_a_finished_child_of_a_waited_batch_finds_what_it_completes_in_one_query(own):
    """A child of ``batch_trigger_and_wait`` costs its attempt's statements and one more:
    the query that finds a waitpoint to complete. Until the last child, nothing else."""
    from trigger_celery.engine import waitpoints

    handle = tasks.trigger("batch-parent", {"n": 3})
    parent = Run.objects.get(id=handle.id)
    current_app.control.purge()
    assert execute(parent.id, parent.attempt_count + 1, worker="budget") == "Suspended"
    assert Run.objects.get(id=parent.id).status == "WAITING"
    children = list(Run.objects.filter(parent_id=parent.id).order_by("batch_index"))
    assert len(children) == 3
    # The batch's own id finds its children on a replay: they need no keys.
    assert [c.idempotency_key for c in children] == [None, None, None]
    current_app.control.purge()

    first = children[0]
    attempt_sql = statements(lambda: execute(first.id, first.attempt_count + 1, worker="budget"))
    finish_sql = statements(lambda: waitpoints.run_finished(first.id, first.batch_id))
    assert len(finish_sql) == 1, finish_sql
    assert finish_sql[0] in attempt_sql  # the attempt made the same single query
    assert len(attempt_sql) <= ATTEMPT_BUDGET[connection.vendor] + 1, attempt_sql

    for child in children[1:]:
        assert execute(child.id, child.attempt_count + 1, worker="budget") == "Completed"
    assert Run.objects.get(id=parent.id).status in ("QUEUED", "DEQUEUED")  # resumed
    current_app.control.purge()
    parent = Run.objects.get(id=parent.id)
    if parent.status == "QUEUED":  # no slot was free when it resumed: dispatch it here
        from trigger_celery.engine import dispatch

        dispatch.dispatch_ready(parent.queue)
        current_app.control.purge()
        parent = Run.objects.get(id=parent.id)
    assert execute(parent.id, parent.attempt_count + 1, worker="budget") == "Completed"
    assert Run.objects.get(id=parent.id).output == [0, 1, 2]


def test_the_run_a_start_returns_is_the_row_the_orm_loads(own):
    """The start builds its ``Run`` from the statement's row without the ORM's loader:
    every field must come out as ``Run.objects.get`` gives it (JSON, times, keys)."""
    from trigger_celery.engine import transitions

    handle = tasks.trigger(
        "quiet",
        {"nested": {"é": [1, 2.5, None]}},
        tags=["a", "b"],
        metadata={"m": {"x": 1}},
        concurrency_key="tenant-1",
        max_duration=30,
    )
    current_app.control.purge()
    run = Run.objects.get(id=handle.id)
    started = transitions.start_attempt(run.id, run.attempt_count + 1, "budget")
    assert started is not None and started.resumed is False
    loaded = Run.objects.get(id=run.id)
    for f in Run._meta.concrete_fields:
        assert getattr(started, f.attname) == getattr(loaded, f.attname), f.attname
    assert started.status == "EXECUTING" and started.started_at is not None
    assert not started._state.adding


def test_a_cached_insert_is_what_the_orm_compiles(db):
    """A trigger's INSERT text is kept after the first: for another run, its text and
    parameters must equal a fresh ORM compile's, and the row must load back as built."""
    from django.db.models.sql import InsertQuery

    from trigger_celery.core.options import parse_trigger_options
    from trigger_celery.engine import compiled_sql
    from trigger_celery.engine.triggering import build_run

    def new_run(payload):  # type: ignore[no-untyped-def]
        opts = parse_trigger_options({"tags": ["t"], "metadata": {"é": [1]}, "priority": 3})
        return build_run("quiet", payload, opts, None)

    compiled_sql.insert_row(new_run({"first": True}))
    key = (connection.vendor, "insert", Run._meta.label)
    assert key in compiled_sql._cache  # the first insert proved the direct parameters

    run = new_run({"second": [1, 2.5, None]})
    fields = Run._meta.local_concrete_fields
    query = InsertQuery(Run)
    query.insert_values(fields, [run], raw=False)
    [(orm_sql, orm_params)] = query.get_compiler(connection=connection).as_sql()
    assert compiled_sql._cache[key] == orm_sql
    assert compiled_sql._same(compiled_sql._row_params(run, fields), tuple(orm_params))

    compiled_sql.insert_row(run)
    loaded = Run.objects.get(id=run.id)
    for f in fields:
        assert getattr(loaded, f.attname) == getattr(run, f.attname), f.attname
    assert not run._state.adding


# A parent's first attempt that triggers the child it waits on, and suspends: the start,
# the child's INSERT and the suspension, whose statement writes the waitpoint too. A
# first execution has no wait step recorded and no child under its step's key, so
# neither is read; the child is kept by this process (``worker.handoff``) and starts only
# after the suspension, so nothing asks whether it ended meanwhile. SQLite writes the
# start and the suspension in BEGIN ... COMMIT, with the attempt row and the waitpoint.
WAITING_PARENT_BUDGET = {"postgresql": 3, "sqlite": 11}
# The kept child's attempt: its start; its final write, which in the same statement
# completes the waitpoint on it with its result and resumes the parent (checking that
# nothing else is pending, and returning what its queue entry needs); the dequeue of the
# parent to this process. SQLite: the same writes one by one in one transaction.
WAITED_CHILD_BUDGET = {"postgresql": 3, "sqlite": 12}
# The resumed parent: its start, the read of the completed wait step, its final write.
RESUMED_PARENT_BUDGET = {"postgresql": 3, "sqlite": 9}


def test_a_parent_its_child_and_its_resume_stay_within_their_budgets(own):
    from trigger_celery.models import Waitpoint
    from trigger_celery.worker import handoff

    tasks.trigger("echo", {"warm": True})  # the child's queue is known to this process
    parent = tasks.trigger("wait-parent", {"n": 1})
    current_app.control.purge()
    outcome = []
    with handoff.chain():
        parent_sql = statements(lambda: outcome.append(execute(parent.id, 1, worker="budget")))
        kept = handoff.take()
        assert outcome == ["Suspended"]
        child = Run.objects.get(parent_id=parent.id)
        assert kept == (child.id, 1)
        assert Run.objects.get(id=parent.id).status == "WAITING"
        assert Waitpoint.objects.filter(
            run_id=parent.id, step=0, kind="RUN", child_run_id=child.id, completed_at=None
        ).exists()  # written by the suspension
        child_sql = statements(lambda: outcome.append(execute(*kept, worker="budget")))
        resumed = handoff.take()
        assert outcome[-1] == "Completed"
        assert resumed == (parent.id, 1)  # the parent, resumed and dequeued to this process
        assert Run.objects.get(id=parent.id).status == "DEQUEUED"
        wp = Waitpoint.objects.get(run_id=parent.id)
        assert wp.result == {
            "ok": True,
            "id": child.id,
            "task_identifier": "echo",
            "output": Run.objects.get(id=child.id).output,
        }
        resume_sql = statements(lambda: outcome.append(execute(*resumed, worker="budget")))
    assert outcome[-1] == "Completed"
    done = Run.objects.get(id=parent.id)
    assert done.output == {
        "ok": True,
        "child": {"payload": {"from": "parent", "n": 1}, "tags": []},
        "child_id": child.id,
    }
    assert [a.number for a in done.attempts.all()] == [1]  # the resume continued attempt 1
    current_app.control.purge()
    vendor = connection.vendor
    print(
        f"{vendor}: waiting parent {len(parent_sql)}, child {len(child_sql)}, "
        f"resumed parent {len(resume_sql)} statements"
    )
    assert len(parent_sql) <= WAITING_PARENT_BUDGET[vendor], parent_sql
    assert len(child_sql) <= WAITED_CHILD_BUDGET[vendor], child_sql
    assert len(resume_sql) <= RESUMED_PARENT_BUDGET[vendor], resume_sql


def test_a_failed_child_resumes_its_parent_in_its_final_write(own):
    # ``transitions.end(..., resume_with=...)``: a child that ends FAILED wakes its parent
    # as a completed one does, within the same budget.
    from trigger_celery.models import Waitpoint
    from trigger_celery.worker import handoff

    tasks.trigger("always-fails", {"warm": True}, max_attempts=1)
    parent = tasks.trigger("unwrap-parent", {})
    current_app.control.purge()
    outcome = []
    with handoff.chain():
        execute(parent.id, 1, worker="budget")
        kept = handoff.take()
        child = Run.objects.get(parent_id=parent.id)
        assert kept == (child.id, 1)
        child_sql = statements(lambda: outcome.append(execute(*kept, worker="budget")))
        resumed = handoff.take()
        assert outcome == ["Failed"]
        assert resumed == (parent.id, 1)  # resumed by the child's final write, then dequeued
        failed = Run.objects.get(id=child.id)
        assert failed.status == "FAILED" and failed.attempts.get().status == "FAILED"
        wp = Waitpoint.objects.get(run_id=parent.id)
        assert wp.result["ok"] is False and wp.result["error"] == failed.error
        assert wp.result["error"]["type"] == "ValueError"
        execute(*resumed, worker="budget")
    done = Run.objects.get(id=parent.id)
    assert done.status == "COMPLETED"
    assert done.output == {
        "ok": False,
        "run_id": child.id,
        "task_id": "always-fails",
        "error": "ValueError",
        "message": (
            f"Run {child.id} of task 'always-fails' did not succeed: "
            "ValueError: this task always fails"
        ),
    }
    current_app.control.purge()
    assert len(child_sql) <= WAITED_CHILD_BUDGET[connection.vendor], child_sql
