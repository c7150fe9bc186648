"""Which query uses each index of every table of the app.

The models declare their indexes in ``Meta.indexes`` and ``Meta.constraints``, none on a
field (``db_index=False`` on the foreign keys, and the primary keys' ``_like`` twins
dropped by migrations 0006 and 0010). This says what each index is for. A test compares
it with the database (``tests/integration/test_index_uses.py``): an index nobody
declares a use for fails it. Every index is written on every insert and on every
update that moves one of its columns, so one no query uses is a cost with no return.
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

# By model name; the primary key of each table is not listed.
INDEX_USES: dict[str, dict[str, str]] = {
    "Run": RUN_INDEX_USES,
    "Attempt": {
        "tc_attempt_unique_number": "one row per attempt of a run; a run's attempts in "
        "order (its run_id prefix): the run page, fenced attempt writes, CASCADE",
    },
    "Batch": {
        "tc_batch_parent": "SET NULL on a batch's parent run when that run is deleted",
    },
    "LogEntry": {
        "tc_log_run": "a run's log lines in order (the run page); CASCADE when it is deleted",
    },
    "Waitpoint": {
        "tc_waitpoint_unique_step": "one waitpoint per step of a run; a run's waitpoints "
        "(its run_id prefix): replay, resume_if_ready, CASCADE",
        "tc_waitpoint_pending": "the pump's and the repair sweep's pending waitpoints",
        "tc_waitpoint_child": "a finished child's pending RUN waitpoints (after every "
        "final write of a child); SET NULL when the child is deleted",
        "tc_waitpoint_batch": "a finished batch's pending BATCH waitpoints; SET NULL when "
        "the batch is deleted",
    },
    "JoinedKey": {
        "tc_joined_key_unique": "idempotency: the run a key that joined a debounced run "
        "points to (find_cached), one per (environment, task, key)",
        "tc_joined_key_run": "CASCADE when the run is deleted",
    },
    "Schedule": {
        "tc_schedule_unique_dedup": "one schedule per deduplication key",
        "tc_schedule_due": "the scheduler's active schedules whose next tick is due",
    },
    "StoreEntry": {
        "tc_store_entry_order": "the embedded store's claim: a queue's (and key's) "
        "waiting runs in order",
    },
    "StoreKeyTurn": {
        "tc_store_key_turn_unique": "the embedded store's round robin: one turn per "
        "(queue, concurrency key)",
    },
    "StoreStart": {
        "tc_store_start_window": "the embedded store's rate limit: a queue's starts in its window",
    },
}
POSTGRESQL_ONLY_INDEXES = {"tc_run_tags"}  # made by migration 0007 on PostgreSQL
