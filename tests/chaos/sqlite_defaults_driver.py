"""Drive a default-SQLite project as a user would; print a JSON report.

50 concurrent debounced triggers (one key), 8 parents that wait on batches of 6 and on
a timer, and an operator who pauses, resumes and overrides the limit of a queue - all
from threads of this one process while a 4-process worker and a beat write to the same
SQLite file.

The debounce window is 10 s: the 50 triggers queue for SQLite's one write lock behind
the worker, the beat and the operator, and with a 2 s window a wait that long between two
of them (seen once in CI on a loaded 2-core machine) let the run start, so a later
trigger made a second one, as debounce promises.
"""

import json
import sys
import threading
import time
import traceback

import django

django.setup()

from trigger_celery import queues, runs, tasks  # noqa: E402

errors: list[str] = []
handles = []
lock = threading.Lock()


def trigger(task_id, payload, **options):
    try:
        handle = tasks.trigger(task_id, payload, **options)
        with lock:
            handles.append(handle)
    except Exception:
        errors.append(traceback.format_exc())


def operate(rounds):
    """What the dashboard's queue page does, over and over, while the runs write."""
    for _ in range(rounds):
        try:
            queues.pause("limit-2")
            queues.resume("limit-2")
            queues.override_limit("limit-2", 3)
            queues.reset_limit("limit-2")
        except Exception:
            errors.append(traceback.format_exc())


threads = (
    [threading.Thread(target=operate, args=(15,)) for _ in range(2)]
    + [
        threading.Thread(
            target=trigger,
            args=("slow-echo", {"n": i, "sleep": 0.01}),
            kwargs={"debounce": {"key": "burst", "delay": "10s"}},
        )
        for i in range(50)
    ]
    + [threading.Thread(target=trigger, args=("sqlite-parent", {})) for _ in range(8)]
)
for t in threads:
    t.start()
for t in threads:
    t.join()

deadline = time.monotonic() + float(sys.argv[1])
pending = {h.id for h in handles}
final = {}
while pending and time.monotonic() < deadline:
    for run_id in list(pending):
        try:
            record = runs.retrieve(run_id)
        except Exception:
            errors.append(traceback.format_exc())
            continue
        if record.is_completed:
            final[run_id] = (record.task_identifier, record.status, record.output)
            pending.discard(run_id)
    time.sleep(0.5)
print(
    json.dumps(
        {
            "errors": errors,
            "pending": sorted(pending),
            "debounced_runs": len({h.id for h in handles if h.task_identifier == "slow-echo"}),
            "final": final,
        }
    )
)
