"""Many new runs in one write: the runs of a batch that differ only in id and payload.

A batch of 1,000 items of one task with the batch's options makes 1,000 rows that are
the same but for ``id``, ``payload``, ``payload_ref`` and ``batch_index``. Building a
model instance and compiling an INSERT parameter per value costs more than the write
itself, so :class:`SiblingRuns` keeps one template run and the varying values only:

- on PostgreSQL the rows go in with one ``COPY``, every shared column prepared once;
- elsewhere (SQLite) they become model instances for ``bulk_create``.

Only :mod:`trigger_celery.engine.batches` uses this module.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Field, JSONField

from trigger_celery.coordination import Entry
from trigger_celery.engine.queueing import score_of
from trigger_celery.models import Run

# The columns that differ between siblings, in the order of ``SiblingRuns.rows``.
VARYING = ("id", "payload", "payload_ref", "batch_index")

# A sibling: id, payload (inline, JSON-able), payload_ref, batch index, and the inline
# payload's JSON text (None when it went to storage), which COPY writes as it is.
Row = tuple[str, Any, str, int, str | None]


@dataclass
class SiblingRuns:
    """Runs made from one template, and a :data:`Row` per run."""

    template: Run
    rows: list[Row] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [row[0] for row in self.rows]

    def entries(self) -> list[Entry]:
        """The store entries of the siblings: one queue, one score (ties go by id, which
        sorts by creation), attempt 1."""
        t = self.template
        score = score_of(t)
        return [Entry(run_id, t.queue, score, t.concurrency_key, 1) for run_id in self.ids]

    def instances(self) -> list[Run]:
        """The siblings as unsaved model instances (for ``bulk_create`` and callers that
        need objects)."""
        out = []
        for run_id, payload, ref, index, _text in self.rows:
            run = copy.copy(self.template)
            run.id, run.payload, run.payload_ref, run.batch_index = run_id, payload, ref, index
            out.append(run)
        return out


def insert(siblings: SiblingRuns) -> None:
    """Write every sibling row, inside the caller's transaction."""
    if not siblings.rows:
        return
    if connection.vendor != "postgresql":
        Run.objects.bulk_create(siblings.instances(), batch_size=500)
        return
    template = siblings.template
    fields: list[Field[Any, Any]] = list(Run._meta.concrete_fields)
    for f in fields:  # what ``pre_save`` sets on each row (created_at): one instant for all
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            f.pre_save(template, add=True)
    shared = [None if f.attname in VARYING else _copy_value(f, template) for f in fields]
    slots = [next(i for i, f in enumerate(fields) if f.attname == name) for name in VARYING]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(Run._meta.db_table)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor: Django's wrapper has no COPY
        with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copying:
            row = list(shared)
            for run_id, payload, ref, index, text in siblings.rows:
                row[slots[0]] = run_id
                row[slots[1]] = None if payload is None else text  # SQL NULL, as the ORM
                row[slots[2]] = ref
                row[slots[3]] = index
                copying.write_row(row)


def _copy_value(f: Field[Any, Any], template: Run) -> Any:
    """A shared column's value as COPY takes it: JSON rendered once to its text (SQL NULL
    for None, as the ORM stores it), anything else as the ORM prepares it."""
    value = getattr(template, f.attname)
    if isinstance(f, JSONField):
        return None if value is None else json.dumps(value, cls=f.encoder)
    return f.get_db_prep_save(value, connection)
