"""Cron expressions and time zones of schedules (SPEC 8): validation and fire times.

An expression has five fields: minute, hour, day of month, month, day of week. Beyond
lists, ranges, steps and month/day names it accepts ``L`` (last day of the month) in the
day of month, ``1L``-``7L`` (last Monday ... last Sunday) and ``n#k`` (k-th weekday) in
the day of week, and 0 or 7 for Sunday. A seconds field is refused.

Fire times follow the wall clock of the schedule's time zone. Each intended local time
fires exactly once:

* when clocks fall back, a local time that happens twice fires at its first occurrence;
* when clocks spring forward, a local time that does not exist fires at the first valid
  instant after the gap (02:30 on the spring-forward day in New York fires at 03:00 EDT),
  and several times in one gap fire once.

croniter expands the fields; this module validates them first, so every mistake gets a
message that names the value, and maps the wall times croniter yields onto instants.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter  # type: ignore[import-untyped]
from croniter.croniter import (  # type: ignore[import-untyped]
    CroniterBadDateError,
    CroniterError,
)

from trigger_celery.core import clock
from trigger_celery.errors import InvalidScheduleError

MAX_PREVIEW = 1000
MAX_LENGTH = 255  # the length of the column a schedule's cron is stored in

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0

    def value(self, token: str, expression: str) -> int:
        lowered = token.lower()
        if lowered in self.names:
            return self.names.index(lowered) + self.name_base
        if not _is_number(token):
            hint = f"use {self.low}-{self.high}"
            if self.names:
                hint += f" or a name like {self.names[0]!r}"
            if "L" in token.upper():
                hint += "; 'L' is allowed alone in the day of month and as 1L-7L in the day of week"
            raise InvalidScheduleError(
                f"cron {expression!r}: {token!r} is not a valid {self.name} value ({hint})"
            )
        number = int(token)
        if not self.low <= number <= self.high:
            raise InvalidScheduleError(
                f"cron {expression!r}: {self.name} {number} is out of range {self.low}-{self.high}"
            )
        return number


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day of week", 0, 7, _DAYS, 0),
)
_RANGE = re.compile(r"^(?P<start>[^-/]+)(?:-(?P<end>[^-/]+))?(?:/(?P<step>.*))?$")
_STAR = re.compile(r"^[*?](?:/(?P<step>.*))?$")
_LAST_WEEKDAY = re.compile(r"^(?P<day>[0-7]|[a-zA-Z]{3})L$")
_NTH_WEEKDAY = re.compile(r"^(?P<day>[0-7]|[a-zA-Z]{3})#(?P<nth>.+)$")


@dataclass(frozen=True)
class CronExpression:
    """A validated expression: ``text`` as the user wrote it (whitespace normalised) and
    the equivalent form(s) croniter evaluates.

    When both day fields are restricted a day matches either of them (classic cron). A
    day field restricts unless it names every value of its field: ``*``, ``?``, ``*/1``,
    ``1-31``, ``0-6``. So ``*/2`` restricts (the odd days): ``0 0 */2 * 1`` fires on odd
    days and on Mondays, as croniter and Trigger.dev's cron-parser have it, where Vixie
    cron and cronie, for which a field starting with ``*`` does not restrict, fire on
    Mondays that are odd days only. Such a field that names every value is evaluated
    as ``*``, also when a list adds ``L``, ``nL`` or ``n#k`` to it (``1-31,L``,
    ``1-30,L``, ``0-6,5L``). croniter cannot combine a day of month with ``1L``-``7L`` or
    ``n#k``, nor plain days of week with them (``1,5L``), so such an expression is
    evaluated as several (one per kind of day) whose times are merged.
    """

    text: str
    engine_forms: tuple[str, ...]


def parse_cron(expression: object) -> CronExpression:
    """Validate ``expression``; raise :class:`InvalidScheduleError` naming what is wrong.

    >>> parse_cron("0 9 * * 1L").engine_forms
    ('0 9 * * L1',)
    """
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidScheduleError(
            f"cron must be a non-empty string like '0 9 * * *', got {expression!r}"
        )
    text = " ".join(expression.split())
    if len(text) > MAX_LENGTH:
        raise InvalidScheduleError(
            f"cron {text!r} is {len(text)} characters long; at most {MAX_LENGTH} fit"
        )
    body = MACROS.get(text.lower(), text)
    if body.startswith("@"):
        raise InvalidScheduleError(
            f"cron {text!r}: unknown shortcut; use one of {', '.join(sorted(MACROS))} "
            "or five fields"
        )
    parts = body.split(" ")
    if len(parts) == 6:
        # A seconds field first (Quartz, Spring), or a year last (AWS): neither is cron's.
        year = re.fullmatch(r"\d{4}([-,/]\d{1,4})*", parts[5])
        extra = "a year field is not supported" if year else "seconds are not supported"
        raise InvalidScheduleError(
            f"cron {text!r} has 6 fields: {extra}; use 5 fields "
            "(minute hour day-of-month month day-of-week)"
        )
    if len(parts) != 5:
        raise InvalidScheduleError(
            f"cron {text!r} has {len(parts)} field(s); it needs exactly 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    engine_parts = [
        ",".join(_check_item(item, field, text) for item in part.split(","))
        for part, field in zip(parts, _FIELDS, strict=True)
    ]
    minute, hour, dom, month, dow = engine_parts
    dom, dow = _unless_every_day(dom, 2), _unless_every_day(dow, 4)
    # croniter cannot mix plain days with nL / n#k in one day of week: one form each.
    special = [item for item in dow.split(",") if any(c in item for c in "L#")]
    plain = [item for item in dow.split(",") if item not in special]
    dows = [",".join(part) for part in (plain, special) if part] if special else [dow]
    # Nor L with numbers in a day of month: it takes "2-31,L" (thirty items) for "*",
    # firing on the 1st. L is a form of its own there too.
    dom_items = dom.split(",")
    doms = [",".join(i for i in dom_items if i != "L"), "L"] if "L" in dom_items else [dom]
    doms = [d for d in doms if d]
    forms: tuple[str, ...] = tuple(f"{minute} {hour} {m} {month} {d}" for m in doms for d in dows)
    if dom not in ("*", "?") and special:
        forms = (
            *(f"{minute} {hour} {m} {month} *" for m in doms),
            *(f"{minute} {hour} * {month} {d}" for d in dows),
        )
    for form in forms:
        try:
            croniter(form, datetime(2000, 1, 1)).get_next(datetime)
        except CroniterBadDateError:  # e.g. "0 0 31 2 *": a date that never comes
            raise InvalidScheduleError(
                f"cron {text!r} is not valid: it never fires, no date has that day of "
                "the month in those months (like February 30)"
            ) from None
        except CroniterError as exc:
            raise InvalidScheduleError(f"cron {text!r} is not valid: {exc}") from None
    return CronExpression(text=text, engine_forms=forms)


def _unless_every_day(part: str, index: int) -> str:
    """``*`` for a day field that covers every day of its field however it is written
    (``1-31``, ``*/1``, ``0-6``, ``sun-sat``, and lists with ``L``, ``nL`` or ``n#k``
    such as ``1-31,L``, ``1-30,L`` or ``0-6,5L``): such a field does not restrict the
    days. croniter alone would let ``1-31`` restrict or not depending on the other
    field's spelling."""
    items = part.split(",")
    plain = [item for item in items if not any(c in item.upper() for c in "L#")]
    if part == "*" or not plain:
        return part
    probe = ["*"] * 5
    probe[index] = ",".join(plain)
    try:
        values = set(croniter.expand(" ".join(probe))[0][index])  # Sunday is 0 only
    except CroniterError:  # reported, naming the expression, by the check that follows
        return part
    # With L in the day of month, days 1-30 are enough: L is the 31st, or there is none.
    every = set(range(1, 31 if "L" in items else 32)) if index == 2 else set(range(7))
    return "*" if "*" in values or every <= values else part


def _check_item(item: str, field: _Field, expression: str) -> str:
    """Validate one comma-separated item of a field; return it in croniter's spelling."""
    if not item:
        raise InvalidScheduleError(f"cron {expression!r}: empty item in the {field.name} field")
    if field.name == "day of month" and item.upper() == "L":
        return "L"
    if field.name == "day of week":
        last = _LAST_WEEKDAY.match(item)
        if last:
            return f"L{field.value(last['day'], expression)}"
        nth = _NTH_WEEKDAY.match(item)
        if nth:
            day = field.value(nth["day"], expression)
            if nth["nth"] not in ("1", "2", "3", "4", "5"):
                raise InvalidScheduleError(
                    f"cron {expression!r}: {item!r}: the week number after '#' must be 1-5"
                )
            return f"{day}#{nth['nth']}"
    star = _STAR.match(item)
    if star:
        if item.startswith("?") and field.name not in ("day of month", "day of week"):
            raise InvalidScheduleError(
                f"cron {expression!r}: '?' is only allowed in the day-of-month and day-of-week fields"
            )
        _check_step(star["step"], field, expression, field.high - field.low)
        return item.replace("?", "*")
    match = _RANGE.match(item)
    if match is None:
        raise InvalidScheduleError(
            f"cron {expression!r}: {item!r} is not a valid {field.name} item"
        )
    start = field.value(match["start"], expression)
    span = field.high - start
    if match["end"] is not None:
        end = field.value(match["end"], expression)
        if end < start:
            raise InvalidScheduleError(
                f"cron {expression!r}: range {item!r} in the {field.name} field goes backwards"
            )
        span = end - start
    _check_step(match["step"], field, expression, max(span, 1))
    if field.name == "day of week" and start == 7 and match["end"] is None:
        return "0"  # "7/2" is 7-7/2: Sunday alone (croniter would step from 0 to 6)
    return item


def _check_step(step: str | None, field: _Field, expression: str, span: int) -> None:
    if step is None:
        return
    if not _is_number(step) or int(step) == 0:
        raise InvalidScheduleError(
            f"cron {expression!r}: step {step!r} in the {field.name} field must be a whole "
            "number of at least 1"
        )
    if int(step) > field.high:
        raise InvalidScheduleError(
            f"cron {expression!r}: step {step} in the {field.name} field is larger than the "
            f"field's range ({field.low}-{field.high})"
        )


def _is_number(token: str) -> bool:
    """Only 0-9: ``str.isdigit()`` also says yes to digits like '²' and '٣'."""
    return token.isascii() and token.isdigit()


# -- time zones ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    """Every IANA time zone name this machine knows, sorted (``UTC`` included)."""
    names = set(available_timezones()) | {"UTC"}
    return tuple(sorted(n for n in names if n not in ("localtime", "Factory", "posixrules")))


def get_zone(name: object) -> ZoneInfo:
    """The zone called ``name``; raise :class:`InvalidScheduleError` for anything else."""
    if not isinstance(name, str) or not name:
        raise InvalidScheduleError(
            f"timezone must be an IANA name like 'America/New_York', got {name!r}"
        )
    if name not in _zone_set():
        near = [z for z in timezone_names() if z.lower() == name.lower()]
        hint = f"did you mean {near[0]!r}?" if near else "use one like 'UTC' or 'Europe/London'"
        raise InvalidScheduleError(
            f"timezone {name!r} is not an IANA time zone name; {hint} (names are "
            "case-sensitive; schedules.timezones() lists them)"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # pragma: no cover - listed but unreadable
        raise InvalidScheduleError(f"timezone {name!r} cannot be loaded") from None


@lru_cache(maxsize=1)
def _zone_set() -> frozenset[str]:
    return frozenset(timezone_names())


# -- fire times ---------------------------------------------------------------------------


def fire_times(
    cron: CronExpression | str,
    zone: ZoneInfo | str,
    *,
    after: datetime,
    count: int,
) -> list[datetime]:
    """The next ``count`` fire times strictly after ``after``, as aware UTC datetimes.

    Times strictly increase; see the module docstring for what happens at DST changes.
    They are in UTC so that subtracting two gives real elapsed time (Python subtracts
    datetimes of one zone by wall clock); ``.astimezone(zone)`` shows them locally.
    """
    expr = cron if isinstance(cron, CronExpression) else parse_cron(cron)
    tz = zone if isinstance(zone, ZoneInfo) else get_zone(zone)
    if after.tzinfo is None:
        raise ValueError(f"after must be an aware datetime, got naive {after!r}")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PREVIEW:
        raise ValueError(f"count must be an int from 1 to {MAX_PREVIEW}, got {count!r}")
    after_utc = after.astimezone(UTC)
    # Walk wall times; a wall time whose instant is not after the previous one (the
    # repeat of a fall-back hour, or a second time inside one spring-forward gap) is
    # the same intended time again and is skipped.
    start_wall = after_utc.astimezone(tz).replace(tzinfo=None, fold=0)
    walker = _walk(expr, start_wall)
    found: list[datetime] = []
    last = after_utc
    # Bounded: every candidate is a distinct wall minute; a fall-back can only make a
    # few hours of them land at or before ``after``.
    for _ in range(count + 60 * 24 * 2):
        wall = next(walker)
        instant = _instant(wall, tz)
        if instant <= last:
            continue
        found.append(instant)
        last = instant
        if len(found) == count:
            return found
    raise InvalidScheduleError(f"cron {expr.text!r}: could not find {count} fire times")


def _walk(expr: CronExpression, start: datetime) -> Iterator[datetime]:
    """Matching wall times after ``start``, in order, each once."""
    streams = [croniter(form, start).all_next(datetime) for form in expr.engine_forms]
    previous = None
    for wall in heapq.merge(*streams):
        if wall != previous:
            yield wall
        previous = wall


def _instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant a cron wall time fires at in ``tz`` (see the module docstring)."""
    aware = wall.replace(tzinfo=tz, fold=0)
    if _exists(aware):
        return aware.astimezone(UTC)  # fold=0: the first of two occurrences
    probe = wall
    for _ in range(2 * 24 * 60):  # the longest gap on record is a day (Samoa, 2011)
        probe += timedelta(minutes=1)
        candidate = probe.replace(tzinfo=tz, fold=0)
        if _exists(candidate):
            return candidate.astimezone(UTC)
    raise InvalidScheduleError(f"no valid local time after {wall} in {tz.key}")


def _exists(aware: datetime) -> bool:
    round_trip = aware.astimezone(UTC).astimezone(aware.tzinfo)
    return round_trip.replace(tzinfo=None) == aware.replace(tzinfo=None)


def preview(
    cron: str,
    *,
    timezone: str | ZoneInfo = "UTC",
    after: datetime | str | None = None,
    count: int = 5,
) -> list[datetime]:
    """The next ``count`` fire times (aware, UTC) of ``cron`` in ``timezone`` (an IANA
    name or a zone, as ``schedules.create`` takes) after ``after``: an aware datetime or
    ISO 8601 string with its offset (default: now)."""
    if isinstance(timezone, ZoneInfo):
        timezone = timezone.key
    if isinstance(after, str):
        try:
            parsed = datetime.fromisoformat(after)
        except ValueError:
            raise InvalidScheduleError(f"after={after!r} is not an ISO 8601 datetime") from None
        if parsed.tzinfo is None:  # refused as a naive datetime is: UTC or ``timezone``?
            raise InvalidScheduleError(
                f"after={after!r} has no UTC offset; give an aware time, e.g. "
                f"'{parsed.isoformat()}+00:00'"
            )
        after = parsed
    elif after is not None and not isinstance(after, datetime):
        raise InvalidScheduleError(f"after={after!r} is not a datetime or an ISO 8601 string")
    return fire_times(parse_cron(cron), get_zone(timezone), after=after or clock.now(), count=count)


def format_local(instant: datetime, zone_name: str) -> str:
    """``instant`` on the wall clock of ``zone_name``: ``2025-03-10 00:00 EDT (-04:00)``;
    a zone with no abbreviation shows its offset once (``2025-03-10 00:00 (+10:30)``)."""
    try:
        zone = get_zone(zone_name)
    except InvalidScheduleError:
        return instant.isoformat()
    local = instant.astimezone(zone)
    offset = local.strftime("%z")  # "-0400"
    name = local.strftime("%Z")  # "EDT", or "+1030" where the zone has no abbreviation
    named = "" if name[:1] in "+-" else f" {name}"
    return f"{local:%Y-%m-%d %H:%M}{named} ({offset[:3]}:{offset[3:5]})"
