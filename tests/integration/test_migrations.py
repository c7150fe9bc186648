"""Migrations carry existing rows over, not only an empty schema."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

APP = "trigger_celery"
BEFORE = (APP, "0012_run_created_at_is_the_trigger_instant")
AFTER = (APP, "0013_joined_keys_and_pending_version_debounce")


def _migrate(target: tuple[str, str]):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.mark.django_db(transaction=True)
def test_0013_keeps_runs_that_waited_for_a_worker_with_one_debounce_key():
    old = _migrate(BEFORE)
    try:
        Run = old.get_model(APP, "Run")
        for i in range(2):  # what the old code could leave: two waiting runs, one key
            Run.objects.create(
                id=f"run_wait_{i}",
                task_identifier="late",
                environment="PRODUCTION",
                status="PENDING_VERSION",
                debounce_key="k",
                max_attempts=1,
            )
        Run.objects.create(
            id="run_delayed",
            task_identifier="late",
            environment="PRODUCTION",
            status="DELAYED",
            debounce_key="k",
            max_attempts=1,
        )
        new = _migrate(AFTER)
        rows = dict(new.get_model(APP, "Run").objects.values_list("id", "debounce_key"))
        assert rows == {"run_wait_0": None, "run_wait_1": None, "run_delayed": "k"}
    finally:
        _migrate(_latest())


def _latest() -> tuple[str, str]:
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes(APP)[0]
