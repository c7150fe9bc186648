"""setup.cfg's oldest allowed libraries are the ones .ci/floor.txt pins for a floor run.

CI installs the newest of each library, so a lower bound in setup.cfg is only known to
work when the suite ran on it: ``VENV=.venv-floor DJANGO=--constraint=.ci/floor.txt
./scripts/test``. The two lists must name the same versions, or that run tests another
floor than the one users get.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from celery.app.defaults import NAMESPACES

ROOT = Path(__file__).resolve().parents[2]


def _version(text: str) -> tuple[int, ...]:
    parts = [int(p) for p in text.split(".")]
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def _lower_bounds() -> dict[str, tuple[int, ...]]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    bounds = {}
    for line in config["options"]["install_requires"].split("\n"):
        match = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9.]+)", line.strip())
        if match:
            bounds[match[1].lower()] = _version(match[2])
    return bounds


def _floor_pins() -> dict[str, tuple[int, ...]]:
    pins = {}
    for line in (ROOT / ".ci" / "floor.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = _version(version.strip())
    return pins


def test_floor_run_pins_exactly_the_lower_bounds_of_setup_cfg():
    bounds, pins = _lower_bounds(), _floor_pins()
    bounds.pop("tzdata")  # data only: any release works
    assert pins == bounds


def test_the_celery_in_use_has_worker_disable_prefetch():
    # worker.prefetch turns it on for Redis brokers; Celery 5.5 has no such setting (its
    # worker logged an AttributeError at start and prefetched 4 runs per process).
    assert "disable_prefetch" in NAMESPACES["worker"]
