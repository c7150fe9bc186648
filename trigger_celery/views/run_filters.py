"""The runs list's filters, read from a query string: the same ones as ``runs.list``.

One parser for the HTML list, its JSON twin that the page polls, and bulk actions on
"everything this filter matches", so the three always agree on which runs they mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db.models import Q
from django.http import QueryDict
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from trigger_celery.core.idempotency import MAX_KEY_LENGTH, hash_key
from trigger_celery.core.statuses import RunStatus
from trigger_celery.models import Run

TEXT_FILTERS = ("task", "tag", "queue", "concurrency_key", "batch", "schedule", "parent", "q")
DATE_FILTERS = ("created_from", "created_to")
# runs.list's names for the same filters, accepted in a hand-made URL too.
ALIASES = {"task_identifier": "task", "from_": "created_from", "to": "created_to"}
LIST_FIELDS = (
    "id",
    "task_identifier",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "attempt_count",
    "queue",
    "tags",
)


@dataclass
class RunFilters:
    """Filters as given (to show them back in the form) and any error naming a value."""

    statuses: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    # Statuses that could not be read, kept as given: a filter carried on (the page's
    # polling, a bulk action) must keep its error, or it would match every run.
    unread_statuses: list[str] = field(default_factory=list)
    # A value that is no filter at all (a NUL character): the request is answered 400.
    refused: bool = False

    @classmethod
    def from_query(cls, query: QueryDict | dict[str, Any]) -> RunFilters:
        get_list = query.getlist if isinstance(query, QueryDict) else _list_getter(query)
        found = cls()
        for status in get_list("status"):
            if status in RunStatus.__members__:
                found.statuses.append(status)
            elif status:
                found.unread_statuses.append(status[:255])
                found.errors.append(f"unknown status {status!r}")
        for name in (*TEXT_FILTERS, *DATE_FILTERS):
            value = (query.get(name) or "").strip()
            for alias in (a for a, canonical in ALIASES.items() if canonical == name):
                value = value or (query.get(alias) or "").strip()
            if value:  # an idempotency key may be 2,048 characters (SPEC 5)
                found.values[name] = value[: MAX_KEY_LENGTH if name == "q" else 255]
            if "\x00" in value:  # no run has one, and the database cannot compare it
                found.errors.append(f"{name}: {value!r} contains a NUL character")
                found.refused = True
        for name in DATE_FILTERS:
            if name in found.values and _when(found.values[name]) is None:
                found.errors.append(
                    f"{name.replace('_', ' ')}: {found.values[name]!r} is not a date or "
                    "date and time (YYYY-MM-DD or YYYY-MM-DDTHH:MM)"
                )
        return found

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, for a bulk action to keep."""
        return {"status": [*self.statuses, *self.unread_statuses], **self.values}

    def query_string(self) -> str:
        q = QueryDict(mutable=True)
        q.setlist("status", [*self.statuses, *self.unread_statuses])
        for name, value in self.values.items():
            q[name] = value
        return q.urlencode()

    @property
    def empty(self) -> bool:
        return not self.statuses and not self.values and not self.unread_statuses

    def apply(self, qs: Any) -> Any:
        v = self.values
        if self.statuses:
            qs = qs.filter(status__in=self.statuses)
        if "task" in v:
            qs = qs.filter(task_identifier=v["task"])
        if "tag" in v:
            qs = qs.with_tag(v["tag"])
        for name, column in (
            ("queue", "queue"),
            ("concurrency_key", "concurrency_key"),
            ("batch", "batch_id"),
            ("schedule", "schedule_id"),
            ("parent", "parent_id"),  # a run's children: its page lists the first 100
        ):
            if name in v:
                qs = qs.filter(**{column: v[name]})
        end = _when(v.get("created_to", ""))
        if end is not None and parse_date(v["created_to"]) is not None:
            # "to" a day: that day included (the last day there is: to its end).
            end = end + timedelta(days=1) if end.date() < date.max else None
        qs = qs.created_between(_when(v.get("created_from", "")), end)
        if "q" in v:
            qs = qs.filter(Q(id=v["q"]) | Q(idempotency_key__in=_stored_keys(v["q"])))
        return qs

    def runs(self) -> Any:
        """The matching runs (nothing when a filter could not be read)."""
        if self.errors:
            return Run.objects.none()
        return self.apply(Run.objects.all())


def _stored_keys(text: str) -> list[str]:
    """The idempotency keys ``text`` may be stored as: the key given to a trigger outside
    a run is kept hashed (a key made inside a run is scoped to it: search its hash)."""
    try:
        return sorted({text, hash_key(text)})
    except ValueError:
        return [text]


def _list_getter(query: dict[str, Any]) -> Any:
    def get_list(name: str) -> list[str]:
        value = query.get(name)
        if value is None:
            return []
        return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]

    return get_list


def _when(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            moment = datetime(day.year, day.month, day.day) if day else None
    except ValueError:
        return None
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_current_timezone())
    try:
        moment is not None and moment.astimezone(UTC)
    except OverflowError:  # past the first or last instant there is, in UTC: that bound
        edge = datetime.min if moment is not None and moment.year == 1 else datetime.max
        return edge.replace(tzinfo=UTC)
    return moment


def duration_of(run: Run, now: datetime | None = None) -> float | None:
    """Seconds from start to finish (to now while it runs); None before it starts."""
    if run.started_at is None:
        return None
    end = run.finished_at or now or timezone.now()
    return max((end - run.started_at).total_seconds(), 0.0)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


def row_of(run: Run) -> dict[str, Any]:
    """A run as the list shows it (and as its JSON sends it)."""
    return {
        "id": run.id,
        "task": run.task_identifier,
        "status": run.status,
        "duration": human_duration(duration_of(run)),
        "attempts": run.attempts_begun,
        "tags": list(run.tags or []),
        "queue": run.queue,
        "created": _stamp(run.created_at),
        "finished": _stamp(run.finished_at),
    }


def _stamp(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")
