"""How many SQL statements a trigger and an attempt cost: a later change cannot add
round trips without this test saying so (issue: a recorded run costs little more than a
plain Celery task)."""

from __future__ import annotations

from celery import current_app
from django.db import connection
from django.test.utils import CaptureQueriesContext

from trigger_celery import tasks
from trigger_celery.models import Run
from trigger_celery.worker.attempt import execute

# PostgreSQL: the INSERT of the run, the UPDATE that dispatches it; the start and the
# end of the attempt are one statement each (data-modifying CTEs). SQLite writes the
# attempt row beside the run row inside BEGIN ... COMMIT.
TRIGGER_BUDGET = {"postgresql": 2, "sqlite": 2}
ATTEMPT_BUDGET = {"postgresql": 2, "sqlite": 9}


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
