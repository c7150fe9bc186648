"""Migrations carry existing rows over, not only an empty schema."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

APP = "trigger_celery"
BEFORE = (APP, "0012_run_created_at_is_the_trigger_instant")
AFTER = (APP, "0013_joined_keys")


def _migrate(target: tuple[str, str]):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.mark.django_db(transaction=True)
def test_0013_leaves_the_runs_of_the_release_before_as_they_are():
    old = _migrate(BEFORE)
    try:
        Run = old.get_model(APP, "Run")
        # What the release before could leave, and keeps writing while its workers run
        # during an upgrade: two runs waiting for a worker with one debounce key.
        for i in range(2):
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
        assert rows == {"run_wait_0": "k", "run_wait_1": "k", "run_delayed": "k"}
    finally:
        _migrate(_latest())


def _latest() -> tuple[str, str]:
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes(APP)[0]


@pytest.mark.django_db(transaction=True)
def test_0016_numbers_existing_schedules_and_lets_the_release_before_insert_more():
    before, after = (APP, "0015_attempt_resumed_at"), (APP, "0016_schedule_version")
    old = _migrate(before)
    try:
        old.get_model(APP, "Schedule").objects.create(
            id="sched_old", task_identifier="t", cron="* * * * *", deduplication_key="old"
        )
        new = _migrate(after)
        # A process of the release before still runs during the upgrade: it inserts rows
        # without the column, and the database fills it in.
        old.get_model(APP, "Schedule").objects.create(
            id="sched_rolling", task_identifier="t", cron="* * * * *", deduplication_key="r"
        )
        versions = dict(new.get_model(APP, "Schedule").objects.values_list("id", "version"))
        assert versions == {"sched_old": 1, "sched_rolling": 1}
    finally:
        _migrate(_latest())
