"""Which query uses each index of the run table.

``Run.Meta.indexes`` declares the indexes; this says what each is for. A test compares
it with the database (``tests/integration/test_run_indexes.py``): an index nobody
declares a use for fails it.
"""

# The status index is the prefix of tc_run_status_delay, the task and schedule ones of
# tc_run_task and tc_run_schedule, so none of those columns has an index of its own.
RUN_INDEX_USES = {
    "tc_run_status_delay": "promote_delayed (DELAYED, delayed_until <= now); every filter "
    "by status: expiry, reconcile, adopting slots, repairs, runs.list(status=)",
    "tc_run_task": "runs.list(task=) and the dashboard's task filter, newest first; "
    "promoting PENDING_VERSION runs of the tasks a worker knows",
    "tc_run_schedule": "runs.list(schedule=) and a schedule's runs, newest first",
    "tc_run_created": "the tasks page's last 24 hours, the admin's date filters; date "
    "ranges of runs.list and the dashboard when the planner prefers it to their id bounds",
    "tc_run_batch": "the runs of a batch in item order: batch results, BATCH waitpoints",
    "tc_run_batch_open": "is a batch done? (partial: the batch's runs not yet final), "
    "checked when a run of a batch someone waits on ends",
    "tc_run_parent": "a run's children: waits on child runs, the run tree",
    "tc_run_root": "a run's descendants; SET NULL when a root run is deleted",
    "tc_run_replayed_from": "a run's replays; SET NULL when the original is deleted",
    "tc_run_unique_idempotency_key": "idempotency: one run per (environment, task, key)",
    "tc_run_unique_pending_debounce": "debounce: one pending run per (environment, task, key)",
    "tc_run_one_per_schedule_tick": "schedules: one run per schedule tick",
    "tc_run_tags": "PostgreSQL only (GIN): the tag filter of runs.list, the dashboard, admin",
}
POSTGRESQL_ONLY_INDEXES = {"tc_run_tags"}  # made by migration 0007 on PostgreSQL
