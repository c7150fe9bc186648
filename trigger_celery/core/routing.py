"""Where a run goes in Celery: machine presets and regions become Celery queue names."""

from __future__ import annotations


def celery_queue_for(machine: str | None, region: str | None, default: str) -> str:
    """The Celery queue a run is sent to.

    Runs without machine or region go to ``default`` (what a plain ``celery worker``
    consumes). Workers of a preset or region subscribe with ``-Q``, e.g.
    ``celery -A proj worker -Q machine.large-1x``.

    >>> celery_queue_for("large-1x", None, "celery")
    'machine.large-1x'
    >>> celery_queue_for("small-1x", "eu", "celery")
    'region.eu.machine.small-1x'
    """
    parts = []
    if region:
        parts.append(f"region.{region}")
    if machine:
        parts.append(f"machine.{machine}")
    return ".".join(parts) if parts else default
