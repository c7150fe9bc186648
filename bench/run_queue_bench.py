"""Queue benchmark: slot turnover on a limit-1 queue, and 10,000 runs over 100 keys.

    .venv/bin/python bench/run_queue_bench.py [--turnover-runs 300] [--keyed-runs 10000]

Same services as ``run_bench.py`` (PostgreSQL, Redis db 14), one worker (prefork, 2).
  * slot turnover: runs of a ``concurrency_limit=1`` queue, triggered together; for
    each run after the first, (its start) - (previous run's end), p50/p99;
  * keyed throughput: N no-op runs spread over 100 concurrency keys of a limit-1 queue,
    already triggered, drained by the worker; against plain Celery draining N no-op
    tasks with the same worker shape. Rate = (N - 1) / (last start - first start).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import run_bench as rb


def turnover(n: int, concurrency: int) -> tuple[float, float]:
    from bench.benchapp.tasks import _client, limit1_noop

    rb.clean_state()
    r = _client()
    r.delete("bench:limit1:start", "bench:limit1:end", "bench:limit1:done")
    worker = rb.start_worker(concurrency)
    try:
        time.sleep(2)  # worker ready
        for i in range(n):
            limit1_noop.trigger({"i": i})
        deadline = time.monotonic() + 300
        while int(r.get("bench:limit1:done") or 0) < n:
            if time.monotonic() > deadline:
                raise RuntimeError("turnover runs did not finish")
            time.sleep(0.01)
    finally:
        rb.stop_worker(worker)
    starts = {int(k): float(v) for k, v in r.hgetall("bench:limit1:start").items()}
    ends = {int(k): float(v) for k, v in r.hgetall("bench:limit1:end").items()}
    order = sorted(starts, key=starts.get)
    gaps = sorted((starts[b] - ends[a]) * 1000 for a, b in itertools.pairwise(order))
    return statistics.median(gaps), gaps[int(len(gaps) * 0.99) - 1]


def keyed(kind: str, n: int, concurrency: int) -> tuple[float, float]:
    from bench.benchapp.tasks import _client, keyed_noop, plain_noop

    rb.clean_state()
    rb.reset(kind)
    started = time.perf_counter()
    if kind == "plain":
        for i in range(n):
            plain_noop.delay(i)
    else:
        for i in range(n):
            keyed_noop.trigger({"i": i}, concurrency_key=f"tenant-{i % 100}")
    enqueue_rate = n / (time.perf_counter() - started)
    worker = rb.start_worker(concurrency)
    try:
        rb.wait_done(kind, n, timeout=900)
    finally:
        rb.stop_worker(worker)
    starts = [float(v) for v in _client().hvals(f"bench:{kind}:start")]
    return enqueue_rate, (n - 1) / (max(starts) - min(starts))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turnover-runs", type=int, default=300)
    parser.add_argument("--keyed-runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    rb.ensure_database()
    rb.setup_django()

    p50s, p99s, plain_rates, keyed_rates = [], [], [], []
    for _ in range(args.repeat):
        p50, p99 = turnover(args.turnover_runs, args.concurrency)
        p50s.append(p50)
        p99s.append(p99)
        print(f"turnover: p50 {p50:.2f} ms p99 {p99:.2f} ms", flush=True)
        _, plain_rate = keyed("plain", args.keyed_runs, args.concurrency)
        trig_enqueue, keyed_rate = keyed("keyed", args.keyed_runs, args.concurrency)
        plain_rates.append(plain_rate)
        keyed_rates.append(keyed_rate)
        print(
            f"keyed: plain {plain_rate:.0f}/s trigger_celery {keyed_rate:.0f}/s "
            f"(trigger rate {trig_enqueue:.0f}/s)",
            flush=True,
        )
    print()
    print(
        f"turnover_runs={args.turnover_runs} keyed_runs={args.keyed_runs} keys=100 "
        f"repeat={args.repeat} pool=prefork concurrency={args.concurrency}"
    )
    print(f"{'metric':40} {'min':>8} {'median':>8} {'max':>8}")
    print(f"{'limit-1 slot turnover p50 (ms)':40} {rb.spread(p50s)}")
    print(f"{'limit-1 slot turnover p99 (ms)':40} {rb.spread(p99s)}")
    print(f"{f'plain Celery drain, {args.keyed_runs} no-op (/s)':40} {rb.spread(plain_rates)}")
    print(f"{'trigger_celery 100 keys x limit 1 (/s)':40} {rb.spread(keyed_rates)}")
    ratio = statistics.median(keyed_rates) / statistics.median(plain_rates)
    print(f"{'ratio (trigger_celery / plain, medians)':40} {ratio:8.2f}")


if __name__ == "__main__":
    main()
