"""Dashboard benchmark: every page on a run table of 1,000,000 rows (PostgreSQL).

    .venv/bin/python bench/run_dashboard_bench.py [--rows 1000000] [--repeat 5] [--refill]

Fills the table once with set-based SQL (``INSERT ... SELECT generate_series``), not
the ORM row by row, into its own database (``trigger_celery_dashboard_bench``, or the
name in ``BENCH_DASHBOARD_PG_NAME``); later runs reuse it unless ``--refill``. Then each page is requested with Django's test
client as a logged-in superuser: server time (median of ``--repeat`` after one warm-up),
the number of queries and the slowest query.

The data: 20 tasks, 30 days of runs (each id begins with its creation time, as
``core/ids.new_id`` makes it, so date filters can bound the primary key), statuses mostly
COMPLETED with FAILED, CANCELED, QUEUED, EXECUTING, DELAYED and a rare SYSTEM_FAILURE;
every run has a tenant tag (1,000 tenants), 1% also the tag "vip".
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.dashboard_settings")

TASKS = [
    "bench-noop",
    "bench-limit1",
    "bench-keyed",
    "bench-fanout",
    "bench-parent",
    *[f"report-{i}" for i in range(15)],
]

FILL = """
INSERT INTO trigger_celery_run (
    id, task_identifier, status, environment, payload, payload_ref, output, output_ref,
    error, options, queue, concurrency_key, priority, machine, region, tags, metadata,
    max_attempts, attempt_count, step_count, depth, resume_parent_on_completion,
    created_at, updated_at, queued_at, started_at, finished_at, execution_ms, trace_context
)
SELECT
    -- As core/ids.new_id makes them: the creation time in ms, then 16 more characters.
    'run_' || pg_temp.tc_base32(floor(extract(epoch FROM t) * 1000)::bigint, 10)
        || lpad(pg_temp.tc_base32(g, 12), 16, '0'),
    (%(tasks)s::text[])[1 + (g::bigint * 7919) %% 20],
    CASE
        WHEN g %% 10000 = 17 THEN 'SYSTEM_FAILURE'
        WHEN g %% 100 < 85 THEN 'COMPLETED'
        WHEN g %% 100 < 93 THEN 'FAILED'
        WHEN g %% 100 < 96 THEN 'CANCELED'
        WHEN g %% 100 < 98 THEN 'QUEUED'
        WHEN g %% 100 < 99 THEN 'EXECUTING'
        ELSE 'DELAYED'
    END,
    'PRODUCTION',
    jsonb_build_object('n', g, 'customer', 'tenant-' || (g %% 1000)),
    '',
    CASE WHEN g %% 100 < 85 THEN jsonb_build_object('ok', true) END,
    '',
    CASE WHEN g %% 100 BETWEEN 85 AND 92
        THEN jsonb_build_object('type', 'RuntimeError', 'message', 'boom', 'stack', '') END,
    '{}'::jsonb,
    (%(tasks)s::text[])[1 + (g::bigint * 7919) %% 20],
    CASE WHEN g %% 3 = 0 THEN 'key-' || (g %% 50) END,
    0, '', '',
    CASE WHEN g %% 100 = 42
        THEN jsonb_build_array('tenant-' || (g %% 1000), 'vip')
        ELSE jsonb_build_array('tenant-' || (g %% 1000)) END,
    '{}'::jsonb,
    3, 1, 0, 0, false,
    t, t, t, t + interval '10 ms', t + interval '10 ms' + (g %% 500) * interval '1 ms', 0,
    '{}'::jsonb
FROM (
    SELECT g, now() - interval '30 days' + g * (interval '30 days' / %(rows)s) AS t
    FROM generate_series(1, %(rows)s) AS g
) AS s
"""

# Crockford base32 (core/ids.py's alphabet), ``width`` characters, most significant first
# (at most 12: PostgreSQL takes a bigint's shift count modulo 64).
BASE32 = """
CREATE FUNCTION pg_temp.tc_base32(value bigint, width int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(
        substr('0123456789abcdefghjkmnpqrstvwxyz', ((value >> (5 * i)) & 31)::int + 1, 1),
        '' ORDER BY i DESC)
    FROM generate_series(0, width - 1) AS i
$$
"""


def ensure_database() -> None:
    import psycopg

    name = os.environ.get("BENCH_DASHBOARD_PG_NAME", "trigger_celery_dashboard_bench")
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def fill(rows: int, refill: bool) -> None:
    from django.db import connection

    from trigger_celery.core.ids import id_time
    from trigger_celery.models import Run

    have = Run.objects.count()
    newest = Run.objects.order_by("-id").first()
    # A table filled before ids carried their creation time is filled again.
    ids_carry_time = (
        newest is not None and abs((id_time(newest.id) - newest.created_at).total_seconds()) < 1
    )
    if have == rows and ids_carry_time and not refill:
        print(f"reusing {have:,} runs")
        return
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE trigger_celery_run CASCADE")
        cursor.execute(BASE32)
        cursor.execute(FILL, {"tasks": TASKS, "rows": rows})
        cursor.execute("ANALYZE trigger_celery_run")
    print(f"filled {rows:,} runs in {time.perf_counter() - started:.1f} s")


def pages(rows: int) -> list[tuple[str, str]]:
    from django.utils import timezone

    from trigger_celery.core.ids import first_id_at
    from trigger_celery.models import Run

    last = Run.objects.order_by("-id").values_list("id", flat=True).first()
    halfway = first_id_at("run", timezone.now() - timezone.timedelta(days=15))
    middle = Run.objects.filter(id__gte=halfway).order_by("id").values_list("id", flat=True)[0]
    day = (timezone.now() - timezone.timedelta(days=10)).strftime("%Y-%m-%d")
    next_day = (timezone.now() - timezone.timedelta(days=9)).strftime("%Y-%m-%d")
    # The admin's own "Past 7 days" link: aware midnights, the upper bound tomorrow.
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    past_week = urlencode(
        {
            "created_at__gte": str(today - timezone.timedelta(days=7)),
            "created_at__lt": str(today + timezone.timedelta(days=1)),
        }
    )
    return [
        ("runs: no filter", "/trigger/"),
        ("runs: status FAILED", "/trigger/?status=FAILED"),
        ("runs: status FAILED+CANCELED", "/trigger/?status=FAILED&status=CANCELED"),
        ("runs: task", "/trigger/?task=report-3"),
        ("runs: rare status + task", "/trigger/?status=SYSTEM_FAILURE&task=report-3"),
        ("runs: tag vip (1%)", "/trigger/?tag=vip"),
        ("runs: tag tenant-7 (0.1%)", "/trigger/?tag=tenant-7"),
        ("runs: queue", "/trigger/?queue=report-5"),
        ("runs: concurrency key", "/trigger/?concurrency_key=key-3"),
        ("runs: one day", f"/trigger/?created_from={day}&created_to={next_day}"),
        ("runs: page in the middle", f"/trigger/?after={middle}"),
        ("runs: run id", f"/trigger/?q={middle}"),
        ("runs.json (live poll)", "/trigger/runs.json?status=EXECUTING"),
        ("run detail", f"/trigger/runs/{last}/"),
        ("run detail json", f"/trigger/runs/{last}/json/"),
        (
            "bulk confirm (filter: tag vip)",
            "/trigger/bulk/?action=cancel&scope=filter&filter=tag%3Dvip",
        ),
        ("tasks (24 h stats)", "/trigger/tasks/"),
        ("test page", "/trigger/test/?task=bench-noop"),
        ("queues", "/trigger/queues/"),
        ("schedules", "/trigger/schedules/"),
        ("admin runs: unfiltered", "/admin/trigger_celery/run/"),
        ("admin runs: status", "/admin/trigger_celery/run/?status__exact=FAILED"),
        ("admin runs: task", "/admin/trigger_celery/run/?task=report-3"),
        ("admin runs: tag vip", "/admin/trigger_celery/run/?tag=vip"),
        (
            "admin runs: past 7 days",
            "/admin/trigger_celery/run/?" + past_week,
        ),
        ("admin run change", f"/admin/trigger_celery/run/{last}/change/"),
    ]


def measure(client, url: str, repeat: int) -> tuple[float, int, float, str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm-up
    assert response.status_code == 200, (url, response.status_code)
    times = []
    captured: CaptureQueriesContext | None = None
    for _ in range(repeat):
        captured = CaptureQueriesContext(connection)
        with captured:
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    queries = captured.captured_queries if captured else []
    slowest = max(queries, key=lambda q: float(q["time"]), default={"time": "0", "sql": ""})
    return statistics.median(times), len(queries), float(slowest["time"]) * 1000, slowest["sql"]


# The write cost of the GIN index on tags (migration 0007): a run's life as single
# committed statements (trigger, start, finish), and a batch of 500 triggered at once.
WRITE_COLUMNS = """trigger_celery_run (id, task_identifier, status, environment, payload,
    payload_ref, output_ref, options, queue, priority, machine, region, tags, metadata,
    max_attempts, attempt_count, step_count, depth, resume_parent_on_completion, created_at,
    updated_at, queued_at, execution_ms, trace_context)"""
WRITE_VALUES = """'report-1', 'QUEUED', 'PRODUCTION', '{"n": 1}', '', '', '{}', 'report-1', 0, '', '',
    %s::jsonb, '{}', 3, 0, 0, 0, false, now(), now(), now(), 0, '{}'"""
TAGS_INDEX = "CREATE INDEX tc_run_tags ON trigger_celery_run USING gin (tags jsonb_path_ops)"


def tags_index_cost(runs: int = 3000, batches: int = 40, rounds: int = 3) -> None:
    from django.db import connection

    def lives(cursor, prefix: str) -> float:
        started = time.perf_counter()
        for i in range(runs):
            run_id, tags = f"{prefix}{i:08d}", f'["tenant-{i % 1000}", "write-bench"]'
            cursor.execute(
                f"INSERT INTO {WRITE_COLUMNS} VALUES (%s, {WRITE_VALUES})", [run_id, tags]
            )
            cursor.execute(
                "UPDATE trigger_celery_run SET status = 'EXECUTING', started_at = now(),"
                " attempt_count = 1 WHERE id = %s",
                [run_id],
            )
            cursor.execute(
                "UPDATE trigger_celery_run SET status = 'COMPLETED', finished_at = now(),"
                """ output = '{"ok": true}' WHERE id = %s""",
                [run_id],
            )
        return (time.perf_counter() - started) / runs * 1000

    def batch(cursor, prefix: str) -> float:
        started = time.perf_counter()
        for b in range(batches):
            cursor.execute(
                f"INSERT INTO {WRITE_COLUMNS} SELECT %s || lpad(g::text, 8, '0'), {WRITE_VALUES}"
                " FROM generate_series(1, 500) AS g",
                [f"{prefix}{b:04d}_", '["tenant-1", "write-bench"]'],
            )
        return (time.perf_counter() - started) / batches * 1000

    found: dict[str, list[float]] = {}
    with connection.cursor() as cursor:
        for r in range(rounds):
            for indexed in (True, False):
                if not indexed:
                    cursor.execute("DROP INDEX tc_run_tags")
                label = "with" if indexed else "without"
                found.setdefault(f"run life, {label} GIN", []).append(
                    lives(cursor, f"run_~{r}{label}")
                )
                found.setdefault(f"batch of 500, {label} GIN", []).append(
                    batch(cursor, f"run_~b{r}{label}")
                )
                if indexed:
                    # GIN defers new entries to a pending list (fastupdate); merging
                    # them into the index is paid later, by vacuum or a full list.
                    started = time.perf_counter()
                    cursor.execute("SELECT gin_clean_pending_list('tc_run_tags')")
                    found.setdefault("GIN pending list merge, per run written", []).append(
                        (time.perf_counter() - started) / (runs + batches * 500) * 1000
                    )
                else:
                    cursor.execute(TAGS_INDEX)
        cursor.execute("DELETE FROM trigger_celery_run WHERE starts_with(id, %s)", ["run_~"])
        cursor.execute("VACUUM ANALYZE trigger_celery_run")
    for name, values in sorted(found.items()):
        print(f"{name}: ms, median of {rounds}: {statistics.median(values):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--refill", action="store_true")
    parser.add_argument("--sql", action="store_true", help="print the slowest query in full")
    parser.add_argument(
        "--only", metavar="TEXT", help="time only the pages whose name contains TEXT"
    )
    parser.add_argument(
        "--tags-index-cost",
        action="store_true",
        help="measure the write cost of the GIN index on tags instead of timing pages",
    )
    args = parser.parse_args()
    ensure_database()

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    fill(args.rows, args.refill)
    if args.tags_index_cost:
        tags_index_cost()
        return

    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    print(f"\n| page | server ms (median of {args.repeat}) | queries | slowest query ms |")
    print("|---|---|---|---|")
    slow_sql = []
    for name, url in pages(args.rows):
        if args.only and args.only not in name:
            continue
        ms, count, slowest_ms, sql = measure(client, url, args.repeat)
        print(f"| {name} | {ms:.1f} | {count} | {slowest_ms:.1f} |")
        slow_sql.append((slowest_ms, name, sql))
    slow_sql.sort(reverse=True)
    print("\nslowest queries:")
    for ms, name, sql in slow_sql[:5]:
        print(f"  {ms:.1f} ms  {name}: {sql if args.sql else sql[:300]}")


if __name__ == "__main__":
    main()
