"""A run's attempt timeline: segments from creation to the end, drawn to scale."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trigger_celery.models import Run


@dataclass(frozen=True)
class Segment:
    label: str
    kind: str  # delayed, queued, executing, waiting (retry delay or a wait)
    start: float  # percent of the whole span
    width: float
    seconds: float


def timeline(run: Run, attempts: list[Any], now: datetime) -> list[Segment]:
    """Delayed, queued, each attempt executing and the gaps between attempts."""
    begin = run.created_at
    end = run.finished_at or now
    total = max((end - begin).total_seconds(), 0.001)
    parts: list[tuple[str, str, datetime, datetime]] = []
    cursor = begin
    if run.delayed_until and run.delayed_until > begin:
        stop = min(run.delayed_until, end)
        parts.append(("delayed", "delayed", begin, stop))
        cursor = stop
    for attempt in attempts:
        if attempt.started_at is None:
            continue
        if attempt.started_at > cursor:
            kind = "queued" if attempt.number == 1 else "waiting"
            parts.append((kind, kind, cursor, attempt.started_at))
        stop = attempt.finished_at or end
        parts.append((f"attempt {attempt.number}", "executing", attempt.started_at, stop))
        cursor = max(cursor, stop)
    started = any(a.started_at is not None for a in attempts)
    if cursor < end and run.finished_at is None:
        parts.append(("queued" if not attempts else "waiting", "queued", cursor, end))
    elif cursor < end and not started:
        # Ended without ever starting (expired, canceled): its whole wait, and how it ended.
        parts.append((f"queued, then {run.status.lower()}", "queued", cursor, end))

    def pct(moment: datetime) -> float:
        return round(100 * (moment - begin).total_seconds() / total, 2)

    return [
        Segment(
            label,
            kind,
            pct(a),
            max(round(pct(b) - pct(a), 2), 0.3),
            round((b - a).total_seconds(), 3),
        )
        for label, kind, a, b in parts
    ]
