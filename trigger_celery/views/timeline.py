"""A run's attempt timeline: segments from creation to the end, drawn to scale."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trigger_celery.core.durations import format_duration
from trigger_celery.core.statuses import AttemptStatus
from trigger_celery.models import Run


@dataclass(frozen=True)
class Segment:
    label: str
    kind: str  # delayed, queued, executing, waiting (retry delay or a wait)
    start: float  # percent of the whole span
    width: float
    seconds: float


@dataclass(frozen=True)
class Wait:
    """A wait of the run (a waitpoint): what it waited for, from when until when."""

    label: str
    start: datetime
    end: datetime | None  # still waiting
    planned: float | None = None  # seconds, for a wait for a time; None: for a run or batch

    @property
    def title(self) -> str:
        if self.planned is not None:
            return f"wait {format_duration(round(self.planned, 1))}"
        return f"wait: {self.label}"


def timeline(
    run: Run, attempts: list[Any], now: datetime, waits: list[Wait] | None = None
) -> list[Segment]:
    """Delayed, queued, each attempt executing, the waits inside an attempt (a suspended
    run continues its attempt when it resumes) and the gaps between attempts."""
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
            if attempt.number == 1:
                parts.append(("queued", "queued", cursor, attempt.started_at))
            else:
                parts.append(("retry delay", "waiting", cursor, attempt.started_at))
        stop = attempt.finished_at or end
        # Suspended at a wait it never came back from (WAITING, QUEUED to resume, or
        # ended so, canceled say): the attempt goes on until now or the run's end, its
        # wait and then its queueing in it.
        pending = attempt.status == AttemptStatus.SUSPENDED and (
            run.finished_at is None or run.finished_at > stop
        )
        if pending:
            stop = run.finished_at or end
        resumed = stop if pending else attempt.resumed_at
        parts.extend(
            _attempt_parts(attempt.number, attempt.started_at, stop, waits or [], end, resumed)
        )
        cursor = max(cursor, stop)
    started = any(a.started_at is not None for a in attempts)
    if cursor < end and run.finished_at is None:
        parts.append(("queued" if not attempts else "waiting", "queued", cursor, end))
    elif cursor < end and not started:
        # Ended without ever starting (expired, canceled): its whole wait, and how it ended.
        parts.append((f"queued, then {run.status.lower()}", "queued", cursor, end))
    elif run.finished_at is not None and not started and parts:
        # Ended while still delayed (canceled, expired): the delay says how it ended.
        label, kind, a, b = parts[-1]
        parts[-1] = (f"{label}, then {run.status.lower()}", kind, a, b)

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


# A resume quicker than this is drawn as the attempt going on (no row of its own).
RESUME_SHOWN = 0.05


def _attempt_parts(
    number: int,
    start: datetime,
    stop: datetime,
    waits: list[Wait],
    end: datetime,
    resumed: datetime | None,
) -> list[tuple[str, str, datetime, datetime]]:
    """An attempt's time, executing except where one of its waits was open, and where it
    was queued to resume after its last wait: from that wait's end until ``resumed``
    (when its latest execution began; ``end`` while it is still queued)."""
    parts = []
    cursor = start
    for wait in sorted(waits, key=lambda w: w.start):
        a, b = max(wait.start, cursor), min(wait.end or end, stop)
        if b <= a:
            continue
        if a > cursor:
            parts.append((f"attempt {number}", "executing", cursor, a))
        parts.append((wait.title, "waiting", a, b))
        cursor = b
        if resumed is not None and wait.end is not None and wait.end < resumed:
            until = min(resumed, stop)
            later = any(w.start < until for w in waits if w.start > wait.start)
            if (until - cursor).total_seconds() >= RESUME_SHOWN and not later:
                parts.append(("queued to resume", "queued", cursor, until))
                cursor = until
    if cursor < stop or not parts:
        parts.append((f"attempt {number}", "executing", cursor, stop))
    return parts
