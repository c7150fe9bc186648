"""One round trip per transition on PostgreSQL.

A transition writes the run row, fenced on its status and attempt, and the attempt row
that belongs to it. As separate statements that is BEGIN, two writes and COMMIT: four
round trips and a commit. PostgreSQL runs data-modifying CTEs, so each transition
below is one statement, committed on its own, with the same fence: the attempt row is
written only when the run row moved. Other databases (SQLite) get the separate
statements in one transaction.

Only :mod:`trigger_celery.engine.transitions` calls this module; it decides every value.
The statements are the ORM's own compiled UPDATEs, wrapped, so field types and
expressions (``F()``) are prepared as Django prepares them.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Model

from trigger_celery.db import write_transaction
from trigger_celery.engine.compiled_sql import update_sql
from trigger_celery.models import Attempt, Run, Waitpoint


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def one_statement() -> bool:
    """Whether this database runs a transition as one statement."""
    return connection.vendor == "postgresql"


def relaxed_commit_sql() -> str:
    """A select-list item that lets this statement's commit skip the wait for the WAL
    flush, or ``NULL`` where that is not safe or not possible.

    Only for the intermediate steps a database crash may undo without harm, because
    the engine repairs them from the rows and the store (QUEUED → DEQUEUED, DEQUEUED →
    EXECUTING): a lost step leaves the run where it was, its lease runs out, and it is
    dispatched again. Every durable point (a trigger's row, a final state) keeps the
    flush, and its flush makes every earlier relaxed commit durable with it. On
    PostgreSQL, outside any transaction of the caller's (whose commit it would relax).
    """
    if one_statement() and not connection.in_atomic_block:
        return "set_config('synchronous_commit', 'off', true)"
    return "NULL"


def move_with_attempt(
    fence: dict[str, Any],
    values: dict[str, Any],
    attempt: int,
    attempt_values: dict[str, Any],
    new_row: Model | None = None,
) -> bool:
    """UPDATE the run within ``fence`` and, only if it moved, its attempt ``attempt``
    and INSERT ``new_row`` (a row a unique constraint already holds stays as it is)."""
    if not one_statement():
        with write_transaction():
            won = _move_in_steps(fence, values, attempt, attempt_values)
            if won and new_row is not None:
                type(new_row).objects.bulk_create([new_row], ignore_conflicts=True)
        return won
    run_sql, run_params = update_sql(Run, fence, values)
    attempt_sql, attempt_params = update_sql(
        Attempt, {"run_id": fence["id"], "number": attempt}, attempt_values
    )
    pk = connection.ops.quote_name(Run._meta.pk.column)
    inserted, insert_params = "", ()
    if new_row is not None:
        insert_sql, insert_params = _insert_from(new_row, "moved")
        inserted = f", inserted AS ({insert_sql} ON CONFLICT DO NOTHING RETURNING 1)"
    sql = (
        f"WITH moved AS ({run_sql} RETURNING {pk}), "
        f"written AS ({attempt_sql} AND EXISTS (SELECT 1 FROM moved) RETURNING 1)"
        f"{inserted} SELECT COUNT(*) FROM moved"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, run_params + attempt_params + insert_params)
        return bool(cursor.fetchone()[0])


def _move_in_steps(
    fence: dict[str, Any], values: dict[str, Any], attempt: int, attempt_values: dict[str, Any]
) -> bool:
    """:func:`move_with_attempt`'s two writes one by one, in the caller's transaction."""
    won = Run.objects.filter(**fence).update(**values)
    if won:
        Attempt.objects.filter(run_id=fence["id"], number=attempt).update(**attempt_values)
    return bool(won)


def move_dropping_attempt(
    fence: dict[str, Any],
    values: dict[str, Any],
    attempt: int,
    *,
    attempt_values: dict[str, Any] | None = None,
) -> bool:
    """UPDATE the run within ``fence`` and, only if it moved, delete its attempt
    ``attempt`` (a start undone), in one transaction. With ``attempt_values`` the row is
    updated with them instead: a resumed attempt's row holds what ran before its wait."""
    with write_transaction():
        won = Run.objects.filter(**fence).update(**values)
        if won:
            row = Attempt.objects.filter(run_id=fence["id"], number=attempt)
            if attempt_values is None:
                row.delete()
            else:
                row.update(**attempt_values)
    return bool(won)


def _insert_from(obj: Model, source: str) -> tuple[str, tuple[Any, ...]]:
    """``INSERT INTO table (columns) SELECT values FROM source``: ``obj`` as a new row
    (its automatic primary key left to the database), once per row of ``source``."""
    fields = [f for f in type(obj)._meta.local_concrete_fields if not f.primary_key or obj.pk]
    for f in fields:
        f.pre_save(obj, add=True)  # auto_now(_add) columns take their time
    return _insert_values(type(obj), {f.attname: getattr(obj, f.attname) for f in fields}, source)


def _insert_values(
    model: type[Model], values: dict[str, Any], source: str
) -> tuple[str, tuple[Any, ...]]:
    """``INSERT INTO table (columns) SELECT values FROM source`` for ``values`` by field
    name or attname (the other columns take their database default)."""
    fields = [(model._meta.get_field(name), value) for name, value in values.items()]
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.column) for f, _ in fields)
    marks = ", ".join(["%s"] * len(fields))
    params = tuple(f.get_db_prep_save(value, connection) for f, value in fields)
    return f"INSERT INTO {table} ({columns}) SELECT {marks} FROM {source}", params


def start_with_attempt(
    fence: dict[str, Any],
    values: dict[str, Any],
    resume_where: dict[str, Any],
    resume_values: dict[str, Any],
    new_attempt: dict[str, Any],
) -> Run | None:
    """UPDATE the run within ``fence`` and return it; in the same statement, continue its
    suspended attempt (``resume_where`` → ``resume_values``) or, if there is none, insert
    ``new_attempt``. The run carries ``resumed``."""
    if not one_statement():
        return _start_in_steps(fence, values, resume_where, resume_values, new_attempt)
    run_sql, run_params = update_sql(Run, fence, values)
    resume_sql, resume_params = update_sql(Attempt, resume_where, resume_values)
    insert_sql, insert_params = _insert_values(Attempt, new_attempt, "moved")
    sql = (
        f"WITH moved AS ({run_sql} RETURNING *), "
        f"resumed AS ({resume_sql} AND EXISTS (SELECT 1 FROM moved) RETURNING 1), "
        f"created AS ({insert_sql} WHERE NOT EXISTS (SELECT 1 FROM resumed) RETURNING 1) "
        "SELECT moved.*, EXISTS (SELECT 1 FROM resumed) AS was_resumed, "
        f"{relaxed_commit_sql()} AS relaxed FROM moved"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, run_params + resume_params + insert_params)
        row = cursor.fetchone()
        if row is None:
            return None
        names = tuple(column.name for column in cursor.description)
    run = _run_from_row(names, row)
    run.resumed = bool(row[names.index("was_resumed")])  # type: ignore[attr-defined]
    return run


def resume_unless_pending(
    fence: dict[str, Any], values: dict[str, Any], fields: tuple[str, ...]
) -> Run | None:
    """UPDATE the run within ``fence`` unless one of its waitpoints is still pending, and
    return ``fields`` of it; None when it did not move. One statement on every database:
    the check for pending waitpoints, the move and the read of what the resume needs."""
    run_sql, run_params = update_sql(Run, fence, values)
    wp = connection.ops.quote_name(Waitpoint._meta.db_table)
    run_id, completed_at = (
        connection.ops.quote_name(Waitpoint._meta.get_field(name).column)
        for name in ("run", "completed_at")
    )
    columns = ", ".join(connection.ops.quote_name(Run._meta.get_field(f).column) for f in fields)
    sql = (
        f"{run_sql} AND NOT EXISTS (SELECT 1 FROM {wp} WHERE {wp}.{run_id} = %s "
        f"AND {wp}.{completed_at} IS NULL) RETURNING {columns}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, (*run_params, fence["id"]))
        row = cursor.fetchone()
        if row is None:
            return None
        names = tuple(column[0] for column in cursor.description)
    return _run_from_row(names, row)


def move_and_resume_waiters(
    fence: dict[str, Any],
    values: dict[str, Any],
    attempt: int,
    attempt_values: dict[str, Any],
    completed: dict[str, Any] | None,
    resume_fence: dict[str, Any],
    resume_values: dict[str, Any],
    fields: tuple[str, ...],
) -> tuple[bool, list[Run]]:
    """:func:`move_with_attempt`, and with the move: the pending RUN waitpoints on this
    run take ``completed``, and each run within ``resume_fence`` that waited on one of
    them and waits on nothing else takes ``resume_values``. Returns whether the run
    moved, and ``fields`` of the runs that were resumed (none when ``completed`` is
    None: then this is :func:`move_with_attempt`).

    One statement on PostgreSQL. Its parts share one snapshot, so the check for other
    pending waitpoints leaves out those this statement completes. (A run has one
    pending waitpoint at a time: it suspends at its first unsatisfied wait.)
    """
    if completed is None:
        return move_with_attempt(fence, values, attempt, attempt_values), []
    fields = fields or ("id",)
    run_id = fence["id"]
    wp_sql, wp_params = update_sql(
        Waitpoint, {"child_run_id": run_id, "completed_at__isnull": True}, completed
    )
    wp_table, run_table = (_quote(m._meta.db_table) for m in (Waitpoint, Run))
    wp_id, wp_run, wp_done = (
        _quote(Waitpoint._meta.get_field(name).column) for name in ("id", "run", "completed_at")
    )
    if not one_statement():
        with write_transaction():
            if not _move_in_steps(fence, values, attempt, attempt_values):
                return False, []
            with connection.cursor() as cursor:
                cursor.execute(f"{wp_sql} RETURNING {wp_run}", wp_params)
                waiting = [row[0] for row in cursor.fetchall()]
            resumed = [
                run
                for waiting_id in waiting
                if (
                    run := resume_unless_pending(
                        {"id": waiting_id, **resume_fence}, resume_values, fields
                    )
                )
                is not None
            ]
        return True, resumed
    run_sql, run_params = update_sql(Run, fence, values)
    attempt_sql, attempt_params = update_sql(
        Attempt, {"run_id": run_id, "number": attempt}, attempt_values
    )
    resume_sql, resume_params = update_sql(Run, resume_fence, resume_values)
    pk = f"{run_table}.{_quote(Run._meta.pk.column)}"
    columns = ", ".join(f"{run_table}.{_quote(Run._meta.get_field(f).column)}" for f in fields)
    sql = (
        f"WITH moved AS ({run_sql} RETURNING {pk}), "
        f"written AS ({attempt_sql} AND EXISTS (SELECT 1 FROM moved) RETURNING 1), "
        f"done AS ({wp_sql} AND EXISTS (SELECT 1 FROM moved) "
        f"RETURNING {wp_table}.{wp_id} AS done_id, {wp_table}.{wp_run} AS waiting_id), "
        f"resumed AS ({resume_sql} AND {pk} IN (SELECT waiting_id FROM done) "
        f"AND NOT EXISTS (SELECT 1 FROM {wp_table} other WHERE other.{wp_run} = {pk} "
        f"AND other.{wp_done} IS NULL AND other.{wp_id} NOT IN (SELECT done_id FROM done)) "
        f"RETURNING {columns}) "
        "SELECT (SELECT COUNT(*) FROM moved) AS moved_count, resumed.* "
        "FROM (SELECT 1) AS one LEFT JOIN resumed ON TRUE"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, run_params + attempt_params + wp_params + resume_params)
        rows = cursor.fetchall()
        names = tuple(column[0] for column in cursor.description)
    first_field = names.index(Run._meta.get_field(fields[0]).column)
    resumed = [_run_from_row(names, row) for row in rows if row[first_field] is not None]
    return bool(rows[0][0]), resumed


def update_returning(
    fence: dict[str, Any], values: dict[str, Any], columns: tuple[str, ...], *, relaxed: bool
) -> list[tuple[Any, ...]]:
    """UPDATE the runs within ``fence``; ``columns`` of those that moved. ``relaxed``:
    its commit need not wait for the WAL flush (:func:`relaxed_commit_sql`)."""
    sql, params = update_sql(Run, fence, values)
    returned = ", ".join(_quote(Run._meta.get_field(name).column) for name in columns)
    extra = f", {relaxed_commit_sql()}" if relaxed else ""
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {returned}{extra}", params)
        return [tuple(row[: len(columns)]) for row in cursor.fetchall()]


def _run_from_row(names: tuple[str, ...], row: tuple[Any, ...]) -> Run:
    """A ``Run`` from a ``RETURNING`` row, as the ORM would load it (columns not in the
    row are deferred).

    ``Run.objects.raw`` works out the column order and each column's converters for every
    row; this works them out once per column list (a third of a start's Python time)."""
    plan = _row_plans.get(names)
    if plan is None:
        index = {name: i for i, name in enumerate(names)}
        steps = []
        for f in Run._meta.concrete_fields:
            if f.column not in index:
                continue
            col = f.get_col(Run._meta.db_table)
            converters = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            steps.append((index[f.column], col, converters))
        attnames = [f.attname for f in Run._meta.concrete_fields if f.column in index]
        plan = _row_plans[names] = (steps, attnames)
    steps, attnames = plan
    values = []
    for i, col, converters in steps:
        value = row[i]
        for convert in converters:
            value = convert(value, col, connection)
        values.append(value)
    return Run.from_db(connection.alias, attnames, values)


_row_plans: dict[tuple[str, ...], tuple[list[tuple[int, Any, list[Any]]], list[str]]] = {}


def _start_in_steps(
    fence: dict[str, Any],
    values: dict[str, Any],
    resume_where: dict[str, Any],
    resume_values: dict[str, Any],
    new_attempt: dict[str, Any],
) -> Run | None:
    run_sql, run_params = update_sql(Run, fence, values)
    with write_transaction():
        # UPDATE ... RETURNING both fences and loads the run (SQLite 3.35+ has RETURNING).
        won = list(Run.objects.raw(f"{run_sql} RETURNING *", run_params))
        if not won:
            return None
        resumed = Attempt.objects.filter(**resume_where).update(**resume_values)
        if not resumed:
            Attempt.objects.create(**new_attempt)
    run = won[0]
    run.resumed = bool(resumed)  # type: ignore[attr-defined]
    return run
