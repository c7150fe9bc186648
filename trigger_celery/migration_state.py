"""Which of trigger_celery's migrations a database lacks.

Asked when a worker or beat starts (``startup_checks``), and by a worker's start-up
steps when one fails, to tell "the release was deployed without ``manage.py migrate``"
(one line saying so) from any other failure (its traceback).
"""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

APP = "trigger_celery"


def unapplied_migrations(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """trigger_celery's migrations the database lacks (by name, in order)."""
    executor = MigrationExecutor(connections[using])
    targets = [node for node in executor.loader.graph.leaf_nodes() if node[0] == APP]
    return [m.name for m, backwards in executor.migration_plan(targets) if not backwards]


def lacks_migrations(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether the database is known to lack some of them; False when it cannot be
    asked (unreachable), which the caller then reports as it would anyway."""
    try:
        return bool(unapplied_migrations(using))
    except DatabaseError:
        return False
