"""Real ``celery worker`` / ``celery beat`` processes for the integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["TC_USE_TEST_DB"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


class Process:
    """A child process whose output goes to a log file, stopped on ``stop()``."""

    def __init__(
        self,
        name: str,
        args: list[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        *,
        cwd: Path = ROOT,
        test_settings: bool = True,
    ) -> None:
        """``test_settings=False`` runs with exactly ``env`` (e.g. the example project)."""
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        # A name may come back in a later test: this process's log starts here.
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=_env(env) if test_settings else env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        """What this process wrote (not an earlier process of the same name)."""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()

    def kill(self) -> None:
        """SIGKILL the whole process group, as an OOM killer or a lost machine would."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self._log.close()


def start_worker(
    log_dir: Path,
    *,
    name: str = "worker",
    concurrency: int = 4,
    pool: str = "prefork",
    queues: str = "celery",
    env: dict[str, str] | None = None,
    prefetch_multiplier: int = 1,
) -> Process:
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.celery_app",
        "worker",
        "-n",
        f"{name}@%h",
        "-P",
        pool,
        "-c",
        str(concurrency),
        "-Q",
        queues,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "INFO",
        "--prefetch-multiplier",
        str(prefetch_multiplier),
    ]
    worker = Process(name, args, log_dir, env)
    try:
        wait_for(
            lambda: "ready." in worker.log() or not worker.alive(),
            timeout=60,
            what=f"{name} to be ready",
        )
    except AssertionError:
        worker.stop()
        raise
    if not worker.alive():
        raise RuntimeError(f"worker {name} exited:\n{worker.log()[-4000:]}")
    return worker


def start_beat(
    log_dir: Path,
    *,
    name: str = "beat",
    env: dict[str, str] | None = None,
    scheduler: str = "trigger_celery.beat:Scheduler",
) -> Process:
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.celery_app",
        "beat",
        "-S",
        scheduler,
        "-l",
        "INFO",
        "--pidfile=",
        "-s",
        str(log_dir / f"{name}-schedule"),
    ]
    beat = Process(name, args, log_dir, env)
    wait_for(
        lambda: "beat: Starting" in beat.log() or not beat.alive(),
        timeout=60,
        what=f"{name} to start",
    )
    if not beat.alive():
        raise RuntimeError(f"beat {name} exited:\n{beat.log()[-4000:]}")
    return beat


def child_pids(proc: Process) -> list[int]:
    """PIDs of a prefork worker's pool processes."""
    out = subprocess.run(["pgrep", "-P", str(proc.proc.pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that were open at one instant."""
    points = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1])
    )
    current = peak = 0
    for _, delta in points:
        current += delta
        peak = max(peak, current)
    return peak


def finished(handle: Any, timeout: float = 60.0) -> Any:
    """Poll the runs API until the run reaches a final status; return its record."""
    from trigger_celery import runs

    return wait_for(
        lambda: (r := runs.retrieve(handle)).is_completed and r,
        timeout=timeout,
        what=f"run {handle} to finish",
    )


def herd(count: int, trigger: Callable[[int], Any]) -> tuple[list[Any], list[Exception]]:
    """Call ``trigger(i)`` from ``count`` threads released at once; returns what the
    calls returned and what they raised. Each thread closes its database connection."""
    import threading

    from django.db import connection

    results: list[Any] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(count)

    def one(i: int) -> None:
        try:
            barrier.wait()
            results.append(trigger(i))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors
