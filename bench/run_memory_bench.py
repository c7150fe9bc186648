"""Worker memory over many runs: does a worker process grow as it executes runs?

    .venv/bin/python bench/run_memory_bench.py [--runs 100000] [--warm 1000] [--concurrency 2]

Same services as ``run_bench.py``. For each system (plain Celery, then trigger_celery)
one worker (prefork, ``--concurrency`` processes, no ``max_tasks_per_child``) executes
``--warm`` no-op runs, then the rest up to ``--runs``. The resident set size (VmRSS) of
the worker's main process and of each pool process is read from ``/proc`` after the warm
runs and again at the end; growth is end / warm - 1, per process and summed.

Runs are sent in slices of 1,000 (``batch_trigger`` / ``delay``) while at most 3,000 are
waiting, so the broker's queue and the coordination store stay small and only the
worker's own memory is measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import run_bench as rb

SLICE = 1000
MAX_WAITING = 3000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        path = task / "children"
        if path.exists():
            found += [int(p) for p in path.read_text().split()]
    return sorted(found)


def snapshot(main_pid: int) -> dict[str, int]:
    """VmRSS in KiB of the worker's main process and of each pool process."""
    out = {"main": rss_kib(main_pid)}
    for i, pid in enumerate(children(main_pid)):
        out[f"pool-{i + 1} ({pid})"] = rss_kib(pid)
    return out


def send(kind: str, start: int, count: int) -> None:
    from bench.benchapp.tasks import plain_noop, trigger_noop

    if kind == "plain":
        for i in range(start, start + count):
            plain_noop.delay(i)
    else:
        trigger_noop.batch_trigger([{"payload": {"i": i}} for i in range(start, start + count)])


def run_until(kind: str, total: int, sent: int) -> int:
    """Send and wait until ``total`` runs are done; returns how many were sent."""
    while rb.done(kind) < total:
        if sent < total and sent - rb.done(kind) < MAX_WAITING:
            count = min(SLICE, total - sent)
            send(kind, sent, count)
            sent += count
        else:
            time.sleep(0.05)
    return sent


def measure(kind: str, runs: int, warm: int, concurrency: int) -> tuple[dict, dict, float]:
    rb.clean_state()
    rb.reset(kind)
    worker = rb.start_worker(concurrency, kind)
    try:
        started = time.monotonic()
        sent = run_until(kind, warm, 0)
        time.sleep(1)  # let the last settles finish before reading memory
        after_warm = snapshot(worker.pid)
        run_until(kind, runs, sent)
        elapsed = time.monotonic() - started
        time.sleep(1)
        after_all = snapshot(worker.pid)
    finally:
        rb.stop_worker(worker)
    return after_warm, after_all, runs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--warm", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    rb.ensure_database()
    rb.setup_django()
    print(f"runs={args.runs} warm={args.warm} pool=prefork concurrency={args.concurrency}")
    print(f"{'system':8} {'process':18} {'RSS warm (MiB)':>15} {'RSS end (MiB)':>14} {'growth':>8}")
    for kind in ("plain", "trigger"):
        warm, end, rate = measure(kind, args.runs, args.warm, args.concurrency)
        for name in warm:
            if name in end:
                growth = end[name] / warm[name] - 1
                print(
                    f"{kind:8} {name:18} {warm[name] / 1024:15.1f} {end[name] / 1024:14.1f} "
                    f"{growth:8.1%}"
                )
        pool = [n for n in warm if n != "main" and n in end]
        total_warm = sum(warm[n] for n in pool)
        total_end = sum(end[n] for n in pool)
        if total_warm:
            print(
                f"{kind:8} {'pool, summed':18} {total_warm / 1024:15.1f} {total_end / 1024:14.1f} "
                f"{total_end / total_warm - 1:8.1%}   ({rate:.0f} runs/s overall)"
            )


if __name__ == "__main__":
    main()
