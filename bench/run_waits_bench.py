"""Waits benchmark: fan-out/fan-in and many parents waiting at once (SPEC 7).

    .venv/bin/python bench/run_waits_bench.py [--children 1000] [--parents 1000] [--repeat 1]

Same services as ``run_bench.py``; one worker (prefork, 2 processes) and the pump
running in this process at the pace beat runs it in production (``pump.tick()`` says
when to come back: ``PUMP_INTERVAL``, or sooner when a delayed run is due).
  * fan-out/fan-in: one parent ``batch_trigger_and_wait`` of N no-op children; time from
    triggering the parent to its completion;
  * N parents, each ``trigger_and_wait`` on one no-op child; time from the first trigger
    to the last parent's completion. Waiting parents hold no worker process.

The end of a measurement is the last ``finished_at`` the runs recorded (the workers'
clock is this machine's), read once they are all done; this process looks for that
every 0.2 s with one cheap query, so the measuring takes little of the two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import run_bench as rb


def run_pump(stop: threading.Event) -> threading.Thread:
    from django.db import close_old_connections

    from trigger_celery.engine.pump import Pump

    def loop() -> None:
        pump = Pump()
        while not stop.is_set():
            close_old_connections()
            stop.wait(pump.tick())

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def seconds_until_completed(task_id: str, ids: list[str], started: float) -> float:
    """Wait until the runs ``ids`` of ``task_id`` have all completed; the seconds from
    ``started`` (``time.time()``) to the last one's ``finished_at``."""
    from django.db.models import Max

    from trigger_celery.models import Run

    deadline = time.monotonic() + 600
    unfinished = Run.objects.filter(task_identifier=task_id).exclude(status="COMPLETED")
    while unfinished.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("runs did not complete in time")
        time.sleep(0.2)
    runs = Run.objects.filter(id__in=ids)
    assert runs.filter(status="COMPLETED").count() == len(ids)
    return runs.aggregate(end=Max("finished_at"))["end"].timestamp() - started


@contextlib.contextmanager
def worker_and_pump(concurrency: int) -> Iterator[None]:
    """A clean state, one worker and the pump (what beat does), for one measurement."""
    rb.clean_state()
    worker = rb.start_worker(concurrency)
    stop = threading.Event()
    run_pump(stop)
    try:
        time.sleep(2)  # worker ready
        yield
    finally:
        stop.set()
        rb.stop_worker(worker)


def fan_out(n: int, concurrency: int) -> float:
    from bench.benchapp.tasks import fanout

    with worker_and_pump(concurrency):
        started = time.time()
        handle = fanout.trigger({"n": n})
        return seconds_until_completed("bench-fanout", [handle.id], started)


def many_parents(n: int, concurrency: int) -> float:
    from bench.benchapp.tasks import parent_of_one

    with worker_and_pump(concurrency):
        started = time.time()
        handles = [parent_of_one.trigger({"i": i}) for i in range(n)]
        return seconds_until_completed("bench-parent", [h.id for h in handles], started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--parents", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    rb.ensure_database()
    rb.setup_django()
    fan, parents = [], []
    for _ in range(args.repeat):
        fan.append(fan_out(args.children, args.concurrency))
        print(f"fan-out/fan-in of {args.children}: {fan[-1]:.2f} s", flush=True)
        parents.append(many_parents(args.parents, args.concurrency))
        print(f"{args.parents} parents x 1 child: {parents[-1]:.2f} s", flush=True)
    print()
    print(
        f"children={args.children} parents={args.parents} repeat={args.repeat} "
        f"pool=prefork concurrency={args.concurrency}"
    )
    print(f"{'metric':44} {'min':>8} {'median':>8} {'max':>8}")
    print(f"{'1 parent x N children, trigger -> done (s)':44} {rb.spread(fan)}")
    print(f"{'N parents x 1 child, first trigger -> all (s)':44} {rb.spread(parents)}")
    print(f"{'  children per second (fan-out)':44} {args.children / statistics.median(fan):8.1f}")
    print(f"{'  parents per second':44} {args.parents / statistics.median(parents):8.1f}")


if __name__ == "__main__":
    main()
