"""Every table of the app carries only the indexes a query declares a use for
(index_uses.INDEX_USES)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection

from trigger_celery.index_uses import INDEX_USES, POSTGRESQL_ONLY_INDEXES
from trigger_celery.models import Run

pytestmark = pytest.mark.django_db

MODELS = sorted(apps.get_app_config("trigger_celery").get_models(), key=lambda m: m.__name__)


def table_indexes(model: type) -> dict[str, dict]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return {
        name: info
        for name, info in found.items()
        if (info["index"] or info["unique"])
        and not info["primary_key"]
        and not name.startswith("sqlite_autoindex_")  # SQLite's own for a primary key
    }


def test_every_model_of_the_app_is_listed() -> None:
    # A model with no index is listed by having no entry: only its primary key.
    assert set(INDEX_USES) <= {m.__name__ for m in MODELS}
    assert "Run" in INDEX_USES and "Waitpoint" in INDEX_USES


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_index_has_a_declared_use(model: type) -> None:
    declared = INDEX_USES.get(model.__name__, {})
    indexes = table_indexes(model)
    undeclared = sorted(set(indexes) - set(declared))
    assert not undeclared, f"{model.__name__}: indexes no query declares a use for: {undeclared}"
    expected = set(declared)
    if connection.vendor != "postgresql":
        expected -= POSTGRESQL_ONLY_INDEXES
    missing = sorted(expected - set(indexes))
    assert not missing, f"{model.__name__}: declared but not in the database: {missing}"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_no_like_twins_and_no_index_that_is_the_prefix_of_another(model: type) -> None:
    with connection.cursor() as cursor:
        every = connection.introspection.get_constraints(cursor, model._meta.db_table)
    assert not [name for name in every if name.endswith("_like")], model.__name__
    indexes = table_indexes(model)
    columns = {name: tuple(info["columns"]) for name, info in indexes.items()}
    # A partial index holds only the rows of its condition: a longer index over every
    # row does not make it redundant (tc_run_batch_open beside tc_run_batch).
    partial = {index.name for index in model._meta.indexes if index.condition is not None}
    for name, cols in columns.items():
        if indexes[name]["unique"] or name in partial:
            continue  # a constraint, not a lookup path; or a slice of the rows
        longer = [
            other
            for other, other_cols in columns.items()
            if other != name and len(other_cols) > len(cols) and other_cols[: len(cols)] == cols
        ]
        assert not longer, f"{model.__name__}: {name} {cols} is the prefix of {longer}"


def test_the_check_fails_on_an_undeclared_index() -> None:
    # The test above can fail: an index added behind the model's back is reported.
    table = connection.ops.quote_name(Run._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE INDEX tc_run_undeclared ON {table} (region)")
    try:
        with pytest.raises(AssertionError, match="tc_run_undeclared"):
            test_every_index_has_a_declared_use(Run)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX tc_run_undeclared")


def test_the_check_fails_on_a_prefix_duplicate() -> None:
    from trigger_celery.models import Waitpoint

    table = connection.ops.quote_name(Waitpoint._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE INDEX tc_waitpoint_kind ON {table} (kind)")
    try:
        with pytest.raises(AssertionError, match="tc_waitpoint_kind"):
            test_no_like_twins_and_no_index_that_is_the_prefix_of_another(Waitpoint)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX tc_waitpoint_kind")
