"""The run table carries only the indexes a query declares a use for (run_indexes.RUN_INDEX_USES)."""

from __future__ import annotations

import pytest
from django.db import connection

from trigger_celery.models import Run
from trigger_celery.run_indexes import POSTGRESQL_ONLY_INDEXES, RUN_INDEX_USES

pytestmark = pytest.mark.django_db


def run_table_indexes() -> dict[str, dict]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, Run._meta.db_table)
    return {
        name: info
        for name, info in found.items()
        if (info["index"] or info["unique"])
        and not info["primary_key"]
        and not name.startswith("sqlite_autoindex_")  # SQLite's own for the primary key
    }


def test_every_index_of_the_run_table_has_a_declared_use():
    indexes = run_table_indexes()
    undeclared = sorted(set(indexes) - set(RUN_INDEX_USES))
    assert not undeclared, f"indexes no query declares a use for: {undeclared}"
    expected = set(RUN_INDEX_USES)
    if connection.vendor != "postgresql":
        expected -= POSTGRESQL_ONLY_INDEXES
    missing = sorted(expected - set(indexes))
    assert not missing, f"declared but not in the database: {missing}"


def test_no_like_twins_and_no_index_that_is_the_prefix_of_another():
    indexes = run_table_indexes()
    assert not [name for name in indexes if name.endswith("_like")]
    columns = {name: tuple(info["columns"]) for name, info in indexes.items()}
    # A partial index holds only the rows of its condition: a longer index over every
    # row does not make it redundant (tc_run_batch_open beside tc_run_batch).
    partial = {index.name for index in Run._meta.indexes if index.condition is not None}
    for name, cols in columns.items():
        if indexes[name]["unique"] or name in partial:
            continue  # a constraint, not a lookup path; or a slice of the rows
        longer = [
            other
            for other, other_cols in columns.items()
            if other != name and len(other_cols) > len(cols) and other_cols[: len(cols)] == cols
        ]
        assert not longer, f"{name} {cols} is the prefix of {longer}"


def test_the_check_fails_on_an_undeclared_index():
    # The test above can fail: an index added behind the model's back is reported.
    table = connection.ops.quote_name(Run._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE INDEX tc_run_undeclared ON {table} (region)")
    try:
        with pytest.raises(AssertionError, match="tc_run_undeclared"):
            test_every_index_of_the_run_table_has_a_declared_use()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX tc_run_undeclared")
