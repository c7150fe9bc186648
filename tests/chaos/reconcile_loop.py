"""Run ``manage.py trigger_reconcile`` in a loop until the file named by argv[1] exists.

Each pass appends a line to argv[2], so the test can prove how often it ran: the
command's own report (how many runs it re-enqueued, slots it freed, runs it dispatched).
"""

import sys
from io import StringIO
from pathlib import Path

import django

django.setup()

from django.core.management import call_command  # noqa: E402

stop, count = Path(sys.argv[1]), Path(sys.argv[2])
while not stop.exists():
    out = StringIO()
    call_command("trigger_reconcile", stdout=out)
    with count.open("a") as fh:
        fh.write(f"reconciled: {out.getvalue().strip()}\n")
