"""Where a run's time goes: statements, store calls and a profile of trigger and attempt.

    .venv/bin/python bench/profile_hot_path.py [--runs 500] [--top 25]

In one process, against the benchmark's PostgreSQL and Redis (``bench/settings.py``):
``--runs`` triggers of a no-op task with no worker (what ``trigger()`` costs), then the
same runs executed one by one through the worker's attempt path (``worker.attempt.execute``,
what the pool process does for each message, without the broker round trip). Prints the
SQL statements and Redis commands per run for each phase, and the functions with the
most cumulative time under cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")


class RedisCounter:
    """Counts the commands this process sends to Redis (pipelines count their commands)."""

    def __init__(self) -> None:
        self.commands: Counter[str] = Counter()

    def install(self) -> None:
        import redis

        counter = self
        original = redis.Redis.execute_command
        original_pipe = redis.client.Pipeline.execute

        def execute_command(self, *args, **options):  # type: ignore[no-untyped-def]
            counter.commands[str(args[0]).split()[0].upper()] += 1
            return original(self, *args, **options)

        def pipe_execute(self, raise_on_error=True):  # type: ignore[no-untyped-def]
            inside = "+".join(str(c[0][0]).split()[0].upper() for c in self.command_stack)
            counter.commands[f"PIPELINE({inside})"] += 1
            return original_pipe(self, raise_on_error)

        redis.Redis.execute_command = execute_command
        redis.client.Pipeline.execute = pipe_execute


def phase(name: str, runs: int, fn, redis_counter: RedisCounter, top: int) -> None:  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    redis_counter.commands.clear()
    profiler = cProfile.Profile()
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        profiler.enable()
        fn()
        profiler.disable()
        elapsed = time.perf_counter() - started
    kinds = Counter(q["sql"].split()[0].upper() for q in queries.captured_queries)
    print(f"\n== {name}: {runs} runs, {elapsed / runs * 1000:.2f} ms per run in-process")
    print(f"SQL statements per run: {len(queries.captured_queries) / runs:.2f}  {dict(kinds)}")
    total_redis = sum(redis_counter.commands.values())
    print(f"Redis calls per run:    {total_redis / runs:.2f}  {dict(redis_counter.commands)}")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    from bench.run_bench import clean_state, ensure_database, setup_django

    ensure_database()
    setup_django()
    from celery import current_app

    from bench.benchapp.tasks import trigger_noop
    from trigger_celery.models import Run
    from trigger_celery.worker.attempt import execute

    clean_state()
    counter = RedisCounter()
    counter.install()
    for i in range(20):  # warm caches: queue limits pushed, connections open
        trigger_noop.trigger({"i": i})
    clean_state()

    phase(
        "trigger()",
        args.runs,
        lambda: [trigger_noop.trigger({"i": i}) for i in range(args.runs)],
        counter,
        args.top,
    )
    dispatched = list(Run.objects.filter(status="DEQUEUED").values_list("id", "attempt_count"))
    current_app.control.purge()  # the in-process attempts below stand in for the worker
    phase(
        "attempt (worker side)",
        len(dispatched),
        lambda: [execute(run_id, count + 1, worker="profile") for run_id, count in dispatched],
        counter,
        args.top,
    )


if __name__ == "__main__":
    main()
