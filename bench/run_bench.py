"""Foundation benchmark: trigger_celery against plain Celery, same broker, same pool.

    .venv/bin/python bench/run_bench.py [--runs 2000] [--latency-runs 500] [--repeat 3]

Needs PostgreSQL (127.0.0.1:5432, trust auth), Redis (127.0.0.1:6379, db 14) and
``pip install 'trigger-celery[bench]'`` (django-celery-results). Three systems, one run:

  * plain:   Celery, results ignored;
  * results: Celery with django-celery-results as Django teams record runs today
             (database backend, ``result_extended``, ``track_started``);
  * trigger: trigger_celery (every run and attempt recorded).

Measures, for each system:
  * enqueue rate: plain ``task.delay()`` vs ``my_task.trigger()`` (run row + queue + send),
    with no worker consuming;
  * drain throughput: N no-op tasks already enqueued, one worker (prefork, 2 processes)
    started; rate from the first task's start to the last one's (boot time excluded);
  * trigger->start latency: sequential, one at a time, p50/p99 over ``--latency-runs``.
Each figure is measured ``--repeat`` times; the table shows min / median / max.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")


def ensure_database() -> None:
    import psycopg

    name = os.environ.get("BENCH_PG_NAME", "trigger_celery_bench")
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    import bench.celery_app  # noqa: F401


SYSTEMS = ("plain", "results", "trigger")


def start_worker(concurrency: int, kind: str = "plain") -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if kind == "results":
        env["BENCH_RESULTS"] = "1"
    log = open(ROOT / "bench" / ".worker.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_app",
            "worker",
            "-P",
            "prefork",
            "-c",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
            "--prefetch-multiplier",
            "4",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def reset(kind: str) -> None:
    from bench.benchapp.tasks import _client

    r = _client()
    r.delete(f"bench:{kind}:start", f"bench:{kind}:done")


def done(kind: str) -> int:
    from bench.benchapp.tasks import _client

    return int(_client().get(f"bench:{kind}:done") or 0)


def wait_done(kind: str, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while done(kind) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{kind}: only {done(kind)}/{n} done after {timeout}s")
        time.sleep(0.002)


def clean_state() -> None:
    from celery import current_app

    from trigger_celery.coordination.factory import get_store
    from trigger_celery.models import Attempt, Run

    current_app.control.purge()
    # TRUNCATE, not DELETE: deleted rows stay in the tables as dead tuples until a vacuum,
    # and a session of benches would read ever slower tables (CASCADE: every table that
    # points at a run, as waitpoints and batches do).
    from django.apps import apps
    from django.db import connection

    tables = [Attempt._meta.db_table, Run._meta.db_table]
    if apps.is_installed("django_celery_results"):
        from django_celery_results.models import TaskResult

        tables.append(TaskResult._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(map(connection.ops.quote_name, tables))} CASCADE")
    get_store().flush()
    from trigger_celery.engine import queueing

    queueing.reset_caches()


def send_one(kind: str, i: int) -> None:
    from bench.benchapp.tasks import plain_noop, results_noop, trigger_noop

    if kind == "plain":
        plain_noop.delay(i)
    elif kind == "results":
        results_noop.delay(i)
    else:
        trigger_noop.trigger({"i": i})


def enqueue(kind: str, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        send_one(kind, i)
    return n / (time.perf_counter() - started)


def measure_enqueue_and_drain(kind: str, n: int, concurrency: int) -> tuple[float, float]:
    clean_state()
    reset(kind)
    rate = enqueue(kind, n)
    worker = start_worker(concurrency, kind)
    try:
        wait_done(kind, n)
    finally:
        stop_worker(worker)
    # From the first task's start to the last task's start: worker boot time is not
    # counted, for either system.
    from bench.benchapp.tasks import _client

    starts = [float(v) for v in _client().hvals(f"bench:{kind}:start")]
    return rate, (n - 1) / (max(starts) - min(starts))


def measure_latency(kind: str, n: int, concurrency: int) -> tuple[float, float]:
    from bench.benchapp.tasks import _client

    clean_state()
    reset(kind)
    worker = start_worker(concurrency, kind)
    try:
        # Warm up: worker ready, connections open.
        for i in range(20):
            send_one(kind, i)
        wait_done(kind, 20, timeout=60)
        reset(kind)
        latencies = []
        for i in range(n):
            t0 = time.time()
            send_one(kind, i)
            wait_done(kind, i + 1, timeout=30)
            start = float(_client().hget(f"bench:{kind}:start", i))
            latencies.append((start - t0) * 1000)
    finally:
        stop_worker(worker)
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


def spread(values: list[float]) -> str:
    return f"{min(values):8.1f} {statistics.median(values):8.1f} {max(values):8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--latency-runs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    ensure_database()
    setup_django()

    from django.apps import apps

    systems = [k for k in SYSTEMS if k != "results" or apps.is_installed("django_celery_results")]
    if "results" not in systems:
        print("django-celery-results is not installed: its row is left out", flush=True)
    results: dict[str, dict[str, list[float]]] = {}
    for kind in systems:
        r = results.setdefault(kind, {"enqueue": [], "drain": [], "p50": [], "p99": []})
        for _ in range(args.repeat):
            rate, drain = measure_enqueue_and_drain(kind, args.runs, args.concurrency)
            r["enqueue"].append(rate)
            r["drain"].append(drain)
            p50, p99 = measure_latency(kind, args.latency_runs, args.concurrency)
            r["p50"].append(p50)
            r["p99"].append(p99)
            print(
                f"{kind}: enqueue {rate:.0f}/s drain {drain:.0f}/s p50 {p50:.2f} ms p99 {p99:.2f} ms",
                flush=True,
            )

    print()
    print(
        f"runs={args.runs} latency_runs={args.latency_runs} repeat={args.repeat} "
        f"pool=prefork concurrency={args.concurrency} broker=redis db=postgresql"
    )
    print(f"{'metric':28} {'system':8} {'min':>8} {'median':>8} {'max':>8}")
    rows = [
        ("enqueue/trigger rate (/s)", "enqueue"),
        ("drain throughput (/s)", "drain"),
        ("trigger->start p50 (ms)", "p50"),
        ("trigger->start p99 (ms)", "p99"),
    ]
    for label, key in rows:
        for kind in systems:
            print(f"{label:28} {kind:8} {spread(results[kind][key])}")
        trigger = statistics.median(results["trigger"][key])
        for peer, name in (("plain", "plain Celery"), ("results", "Celery + results")):
            if peer in results:
                ratio = trigger / statistics.median(results[peer][key])
                print(f"{'':28} {'ratio':8} {ratio:8.2f}  (trigger_celery / {name}, medians)")


if __name__ == "__main__":
    main()
