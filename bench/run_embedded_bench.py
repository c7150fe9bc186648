"""The embedded default's broker: Celery's file-system transport as it ships, against
``EmbeddedTransport`` (the same transport, waited on in short slices), in one run.

    .venv/bin/python bench/run_embedded_bench.py [--runs 300] [--repeat 2]

Each repeat copies ``example_project`` (SQLite, the embedded store, a file-system broker)
into a fresh folder per transport. With no worker running it triggers ``--runs`` runs
of ``hello-world``, then starts one ``celery worker -c 2`` and times the drain; then it
times single runs on the idle worker (trigger to COMPLETED, the median of 10).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = """
from example_project.settings import *  # noqa: F403
import os
if os.environ.get("PLAIN_TRANSPORT"):
    CELERY_BROKER_TRANSPORT = "kombu.transport.filesystem:Transport"
"""

DRIVER = """
import statistics, sys, time
from demo.tasks import hello_world
from trigger_celery.models import Run

def wait(ids, timeout=600):
    deadline = time.time() + timeout
    while Run.objects.filter(id__in=ids, status="COMPLETED").count() < len(ids):
        if time.time() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.05)

if sys.argv[1] == "trigger":
    ids = [hello_world.trigger({"message": str(i)}).id for i in range(int(sys.argv[2]))]
    open("ids.txt", "w").write("\\n".join(ids))
elif sys.argv[1] == "drain":
    ids = open("ids.txt").read().split()
    started = time.time()
    wait(ids)
    print("DRAIN", len(ids) / (time.time() - started))
else:
    times = []
    for i in range(10):
        started = time.time()
        wait([hello_world.trigger({"message": "one"}).id])
        times.append(time.time() - started)
        time.sleep(0.3)
    print("LATENCY", statistics.median(times))
"""


def _measure(folder: Path, plain: bool, runs: int) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "REDIS"))}
    env.update(
        DJANGO_SETTINGS_MODULE="bench_settings",
        TRIGGER_DEMO_DATA=str(folder / "data"),
        PYTHONPATH=str(ROOT),
    )
    if plain:
        env["PLAIN_TRANSPORT"] = "1"
    py = sys.executable

    def manage(*args: str) -> str:
        done = subprocess.run(
            [py, "manage.py", *args], cwd=folder, env=env, capture_output=True, text=True
        )
        if done.returncode:
            raise SystemExit(done.stdout + done.stderr)
        return done.stdout

    manage("migrate", "--noinput", "-v", "0")
    manage("shell", "-c", f"import sys; sys.argv = ['', 'trigger', '{runs}']\n{DRIVER}")
    procs = [
        subprocess.Popen(
            [py, "-m", "celery", "-A", "example_project", *args, "-l", "warning"],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for args in (["worker", "-c", "2", "-n", "bench@%h"], ["beat"])
    ]
    try:
        drain = manage("shell", "-c", f"import sys; sys.argv = ['', 'drain']\n{DRIVER}")
        latency = manage("shell", "-c", f"import sys; sys.argv = ['', 'latency']\n{DRIVER}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    return float(drain.split("DRAIN ")[1]), float(latency.split("LATENCY ")[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"as shipped": [], "EmbeddedTransport": []}
    for _ in range(args.repeat):
        for name in results:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "site"
                shutil.copytree(ROOT / "example_project", folder)
                (folder / "bench_settings.py").write_text(SETTINGS)
                started = time.time()
                results[name].append(_measure(folder, name == "as shipped", args.runs))
                print(f"{name}: {results[name][-1]} ({time.time() - started:.0f} s)", flush=True)
    print(f"\n{args.runs} runs, worker -c 2, {args.repeat} repeat(s): min / median / max")
    for name, figures in results.items():
        drains = [d for d, _ in figures]
        lats = [lat * 1000 for _, lat in figures]
        print(
            f"{name:>18}: drain {min(drains):.1f} / {statistics.median(drains):.1f} / "
            f"{max(drains):.1f} runs/s; idle trigger -> COMPLETED {min(lats):.0f} / "
            f"{statistics.median(lats):.0f} / {max(lats):.0f} ms"
        )


if __name__ == "__main__":
    main()
