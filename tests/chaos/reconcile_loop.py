"""Run ``manage.py trigger_reconcile`` in a loop until the file named by argv[1] exists.

Each pass appends a line to argv[2], so the test can prove how often it ran.
"""

import sys
from pathlib import Path

import django

django.setup()

from django.core.management import call_command  # noqa: E402

stop, count = Path(sys.argv[1]), Path(sys.argv[2])
while not stop.exists():
    call_command("trigger_reconcile", verbosity=0)
    with count.open("a") as fh:
        fh.write("reconciled\n")
