"""Trigger options benchmark: what an idempotency key, a debounce and a batch cost.

    .venv/bin/python bench/run_options_bench.py [--runs 1000] [--repeat 3]

Same services as ``run_bench.py``; no worker runs (the triggers are measured, not the
executions). Rates, in runs (or triggers) per second:
  * plain ``trigger()``;
  * ``trigger(idempotency_key=<new key each time>)`` - the lookup and the guarded insert;
  * ``trigger(debounce={"key": <one of 100 keys>, "delay": "1h"})`` - after the first
    100 triggers every one pushes an existing pending run;
  * ``batch_trigger`` of 1,000 items - runs created per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import run_bench as rb


def rate(fn, n: int) -> float:
    from trigger_celery.engine import queueing

    rb.clean_state()
    queueing.restore()  # the store's limits back before the clock starts, as in production
    started = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rb.ensure_database()
    rb.setup_django()
    from bench.benchapp.tasks import trigger_noop

    cases = {
        "plain trigger": lambda n: [trigger_noop.trigger({"i": i}) for i in range(n)],
        "idempotency_key": lambda n: [
            trigger_noop.trigger({"i": i}, idempotency_key=f"key-{i}-{time.time_ns()}")
            for i in range(n)
        ],
        "debounce (100 keys)": lambda n: [
            trigger_noop.trigger({"i": i}, debounce={"key": f"k{i % 100}", "delay": "1h"})
            for i in range(n)
        ],
        "batch_trigger x1000": lambda n: [
            trigger_noop.batch_trigger([{"payload": {"i": i}} for i in range(1000)])
            for _ in range(n // 1000 or 1)
        ],
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, fn in cases.items():
            n = max(args.runs, 5000) if name.startswith("batch") else args.runs
            results[name].append(rate(fn, n))
            print(f"{name}: {results[name][-1]:.0f}/s", flush=True)
    print()
    print(f"runs={args.runs} repeat={args.repeat} db=postgresql store=redis (no worker)")
    print(f"{'case':24} {'min':>8} {'median':>8} {'max':>8}  vs plain")
    base = statistics.median(results["plain trigger"])
    for name, values in results.items():
        print(f"{name:24} {rb.spread(values)}  {statistics.median(values) / base:6.2f}x")


if __name__ == "__main__":
    main()
