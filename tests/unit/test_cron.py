"""Cron expressions and time zones of schedules: validation, fire times, DST (pure)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from trigger_celery.core.cron import fire_times, format_local, get_zone, parse_cron, preview
from trigger_celery.core.cron_words import describe
from trigger_celery.core.schedules import ScheduledPayload, ScheduleSpec
from trigger_celery.errors import InvalidScheduleError

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


def hours_between(times: list[datetime]) -> list[float]:
    return [(b - a).total_seconds() / 3600 for a, b in itertools.pairwise(times)]


def local(times: list[datetime], zone: ZoneInfo) -> list[str]:
    return [t.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") for t in times]


# -- DST --------------------------------------------------------------------------------


def test_daily_midnight_new_york_is_23_hours_apart_across_spring_forward():
    times = preview(
        "0 0 * * *",
        timezone="America/New_York",
        after=datetime(2025, 3, 8, 12, tzinfo=UTC),
        count=3,
    )
    assert local(times, NY) == [
        "2025-03-09 00:00 EST",
        "2025-03-10 00:00 EDT",
        "2025-03-11 00:00 EDT",
    ]
    assert hours_between(times) == [23.0, 24.0]


def test_daily_midnight_new_york_is_25_hours_apart_across_fall_back():
    times = preview(
        "0 0 * * *",
        timezone="America/New_York",
        after=datetime(2025, 11, 1, 12, tzinfo=UTC),
        count=3,
    )
    assert local(times, NY) == [
        "2025-11-02 00:00 EDT",
        "2025-11-03 00:00 EST",
        "2025-11-04 00:00 EST",
    ]
    assert hours_between(times) == [25.0, 24.0]


def test_spring_forward_gap_fires_once_at_the_first_valid_instant_new_york():
    # 02:00-02:59 does not exist on 2025-03-09 in New York: 02:00 and 02:30 both fire
    # once, at 03:00 EDT, and 03:00 itself is the same instant.
    times = preview(
        "*/30 1-3 * * *",
        timezone="America/New_York",
        after=datetime(2025, 3, 9, 5, tzinfo=UTC),
        count=5,
    )
    assert local(times, NY) == [
        "2025-03-09 01:00 EST",
        "2025-03-09 01:30 EST",
        "2025-03-09 03:00 EDT",
        "2025-03-09 03:30 EDT",
        "2025-03-10 01:00 EDT",
    ]


def test_daily_time_inside_the_gap_is_not_skipped():
    times = preview(
        "30 2 * * *",
        timezone="America/New_York",
        after=datetime(2025, 3, 8, 12, tzinfo=UTC),
        count=3,
    )
    assert local(times, NY) == [
        "2025-03-09 03:00 EDT",
        "2025-03-10 02:30 EDT",
        "2025-03-11 02:30 EDT",
    ]


def test_fall_back_repeated_hour_fires_once_new_york():
    times = preview(
        "30 * * * *",
        timezone="America/New_York",
        after=datetime(2025, 11, 2, 4, tzinfo=UTC),
        count=4,
    )
    # 01:30 happens twice (EDT then EST); it fires only the first time.
    assert local(times, NY) == [
        "2025-11-02 00:30 EDT",
        "2025-11-02 01:30 EDT",
        "2025-11-02 02:30 EST",
        "2025-11-02 03:30 EST",
    ]
    assert hours_between(times) == [1.0, 2.0, 1.0]


def test_london_spring_forward_and_fall_back():
    spring = preview(
        "30 1 * * *", timezone="Europe/London", after=datetime(2025, 3, 29, 12, tzinfo=UTC), count=3
    )
    assert local(spring, LONDON) == [
        "2025-03-30 02:00 BST",
        "2025-03-31 01:30 BST",
        "2025-04-01 01:30 BST",
    ]
    autumn = preview(
        "30 1 * * *",
        timezone="Europe/London",
        after=datetime(2025, 10, 25, 12, tzinfo=UTC),
        count=3,
    )
    assert local(autumn, LONDON) == [
        "2025-10-26 01:30 BST",
        "2025-10-27 01:30 GMT",
        "2025-10-28 01:30 GMT",
    ]
    assert hours_between(autumn) == [25.0, 24.0]
    midnight = preview(
        "0 0 * * *", timezone="Europe/London", after=datetime(2025, 3, 29, 12, tzinfo=UTC), count=2
    )
    assert hours_between(midnight) == [23.0]


def test_after_inside_the_repeated_hour_does_not_fire_the_repeat():
    # After 01:40 EST (the second 01:40), the 01:45 tick already happened (at 01:45 EDT).
    after = datetime(2025, 11, 2, 1, 40, tzinfo=NY).replace(fold=1)
    times = fire_times("*/15 * * * *", "America/New_York", after=after, count=2)
    assert local(times, NY) == ["2025-11-02 02:00 EST", "2025-11-02 02:15 EST"]


# -- L, 1L-7L, Sunday ---------------------------------------------------------------------


def test_last_day_of_month_from_january_31_to_february():
    leap = preview("0 23 L * *", after=datetime(2024, 1, 31, 23, 0, tzinfo=UTC), count=2)
    assert [t.date().isoformat() for t in leap] == ["2024-02-29", "2024-03-31"]
    common = preview("0 23 L * *", after=datetime(2025, 1, 31, 23, 0, tzinfo=UTC), count=2)
    assert [t.date().isoformat() for t in common] == ["2025-02-28", "2025-03-31"]


def test_1L_is_the_last_monday_of_each_month():
    times = preview(
        "0 9 * * 1L", timezone="Europe/Paris", after=datetime(2025, 1, 1, tzinfo=UTC), count=4
    )
    paris = [t.astimezone(ZoneInfo("Europe/Paris")) for t in times]
    assert [t.date().isoformat() for t in paris] == [
        "2025-01-27",
        "2025-02-24",
        "2025-03-31",
        "2025-04-28",
    ]
    assert all(
        t.weekday() == 0 and t.hour == 9 and (t + timedelta(days=7)).month != t.month for t in paris
    )


@pytest.mark.parametrize("day", ["0L", "7L", "sunL"])
def test_last_sunday_spellings(day):
    times = preview(f"0 1 * * {day}", after=datetime(2025, 1, 1, tzinfo=UTC), count=3)
    assert [t.date().isoformat() for t in times] == ["2025-01-26", "2025-02-23", "2025-03-30"]


@pytest.mark.parametrize("sunday", ["0", "7", "sun", "SUN"])
def test_sunday_is_0_or_7(sunday):
    times = preview(f"0 12 * * {sunday}", after=datetime(2025, 6, 1, 13, tzinfo=UTC), count=2)
    assert [t.date().isoformat() for t in times] == ["2025-06-08", "2025-06-15"]


@pytest.mark.parametrize("expression", ["7/2", "7/3"])
def test_a_step_from_sunday_as_7_is_sunday_alone(expression):
    """7/2 is 7-7/2, as 0/2 is 0-7/2 (Sunday, Tuesday, Thursday, Saturday)."""
    after = datetime(2026, 1, 1, tzinfo=UTC)
    times = preview(f"0 12 * * {expression}", after=after, count=3)
    assert {t.strftime("%a") for t in times} == {"Sun"}
    stepped = preview("0 12 * * sun/2", after=after, count=4)
    assert [t.strftime("%a") for t in stepped] == ["Thu", "Sat", "Sun", "Tue"]  # 1 Jan: Thu


def test_nth_weekday_and_names():
    times = preview("0 9 * jan-mar fri#2", after=datetime(2025, 1, 1, tzinfo=UTC), count=3)
    assert [t.date().isoformat() for t in times] == ["2025-01-10", "2025-02-14", "2025-03-14"]


def test_shortcuts_are_expanded():
    assert preview("@hourly", after=datetime(2025, 1, 1, 10, 5, tzinfo=UTC), count=1) == [
        datetime(2025, 1, 1, 11, tzinfo=UTC)
    ]


def test_ticks_are_strictly_after_after_and_utc():
    after = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
    assert preview("* * * * *", after=after, count=3) == [
        after + timedelta(minutes=n) for n in (1, 2, 3)
    ]
    assert all(t.tzinfo is UTC for t in preview("0 9 * * *", timezone="Asia/Tokyo", count=2))


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("*/0 * * * *", "step '0' in the minute field"),
        ("77 * * * *", "minute 77 is out of range 0-59"),
        ("0 0 * * * *", "6 fields: seconds are not supported"),
        ("0 0 1 1 * 2027", "6 fields: a year field is not supported"),
        ("0 0 0 * * * *", "7 field(s)"),
        ("garbage", "1 field(s)"),
        ("a b c d e", "'a' is not a valid minute value"),
        ("", "non-empty string"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 32 * *", "day of month 32 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day of week 8 is out of range 0-7"),
        ("0 0 * * 8L", "'8L' is not a valid day of week value"),
        ("0 0 L-3 * *", "'L' is not a valid day of month value"),
        ("L 0 * * *", "'L' is not a valid minute value"),
        ("0 0 15W * *", "'15W' is not a valid day of month value"),
        ("5-1 * * * *", "range '5-1' in the minute field goes backwards"),
        ("*/99 * * * *", "larger than the field's range"),
        ("0 0 31 2 *", "is not valid: it never fires"),
        ("0 0 31 4,6,9,11 *", "no date has that day of the month in those months"),
        ("0 0 * * 1#6", "week number after '#' must be 1-5"),
        ("0,,5 * * * *", "empty item"),
        ("? * * * *", "'?' is only allowed"),
        ("@every 5m", "unknown shortcut"),
        # Digits other than 0-9 (str.isdigit() says yes to them, int() to some).
        ("0 \u00b2 * * *", "'\u00b2' is not a valid hour value"),
        ("\u0663 * * * *", "'\u0663' is not a valid minute value"),
        ("*/\u00b2 * * * *", "step '\u00b2' in the minute field"),
        ("0-30/\u0661\u0665 * * * *", "step '\u0661\u0665' in the minute field"),
        # Longer than the column that stores it.
        ("0," * 200 + "0 * * * *", "is 409 characters long; at most 255 fit"),
    ],
)
def test_bad_expressions_are_refused_with_a_message_naming_them(expression, message):
    with pytest.raises(InvalidScheduleError) as info:
        parse_cron(expression)
    assert message in str(info.value)
    if expression:
        assert repr(" ".join(expression.split())) in str(info.value)


@pytest.mark.parametrize("value", [None, 5, ["0 * * * *"]])
def test_non_string_cron_is_refused(value):
    with pytest.raises(InvalidScheduleError, match="non-empty string"):
        parse_cron(value)


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "EST5", "utc", "", "../etc/passwd", "localtime", None]
)
def test_unknown_timezones_are_refused(zone):
    with pytest.raises(InvalidScheduleError, match="timezone"):
        get_zone(zone)
    with pytest.raises(InvalidScheduleError, match="timezone"):
        preview("0 9 * * *", timezone=zone)


def test_known_timezones_are_accepted():
    for name in ("UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe"):
        assert get_zone(name).key == name


def test_preview_refuses_bad_count_and_naive_after():
    with pytest.raises(ValueError, match="count"):
        preview("* * * * *", count=0)
    with pytest.raises(ValueError, match="aware"):
        preview("* * * * *", after=datetime(2025, 1, 1))


def test_description_in_words():
    assert describe("0 9 * * 1L") == "At 09:00, on the last Monday of the month"
    assert describe("*/15 * * * *") == "Every 15 minutes"
    assert describe("@daily") == describe("0 0 * * *") != "@daily"
    assert describe("0 12 * * 0,7") == "At 12:00, only on Sunday"  # 0 and 7 are one day
    assert describe("0 12 * * 1,3") == "At 12:00, only on Monday and Wednesday"


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        # Only nth / last weekdays: the library said "on the  Friday and Friday".
        (
            "0 9 * * 5#2,5#4",
            "At 09:00, on the second Friday of the month or on the fourth Friday of the month",
        ),
        (
            "0 9 * * 1#1,1L",
            "At 09:00, on the first Monday of the month or on the last Monday of the month",
        ),
        (
            "0 9 1 * 5#2,5#4",
            "At 09:00, on day 1 of the month or on the second Friday of the month or on the "
            "fourth Friday of the month",
        ),
        ("0 9 * * 5#4", "At 09:00, on the fourth Friday of the month"),  # it has no "fourth"
        # A lowercase l is the last day, as cron reads it ("on day l of the month").
        ("0 9 l * *", "At 09:00, on the last day of the month"),
        ("0 9 * * 5l", "At 09:00, on the last Friday of the month"),
    ],
)
def test_descriptions_of_nth_and_last_days(cron, words):
    assert describe(cron) == words


# -- specs and payloads -------------------------------------------------------------------


def test_declaration_forms():
    assert ScheduleSpec.from_declaration("0 * * * *", task_id="t") == ScheduleSpec("0 * * * *")
    spec = ScheduleSpec.from_declaration(
        {
            "pattern": "0 5 * * *",
            "timezone": "Asia/Tokyo",
            "environments": ["STAGING", "PRODUCTION"],
        },
        task_id="t",
    )
    assert spec == ScheduleSpec("0 5 * * *", "Asia/Tokyo", ("PRODUCTION", "STAGING"))
    assert ScheduleSpec.build("0 5 * * *", ZoneInfo("Asia/Tokyo")).timezone == "Asia/Tokyo"
    with pytest.raises(InvalidScheduleError, match="unknown cron key"):
        ScheduleSpec.from_declaration({"pattern": "0 5 * * *", "tz": "UTC"}, task_id="t")
    with pytest.raises(InvalidScheduleError, match="needs 'pattern'"):
        ScheduleSpec.from_declaration({"timezone": "UTC"}, task_id="t")
    with pytest.raises(InvalidScheduleError, match="unknown environment"):
        ScheduleSpec.build("0 5 * * *", "UTC", ["PROD"])
    with pytest.raises(InvalidScheduleError, match="must be a list"):
        ScheduleSpec.build("0 5 * * *", "UTC", "PRODUCTION")


def test_payload_round_trips_as_aware_datetimes():
    tick = datetime(2025, 3, 9, 7, tzinfo=UTC)
    payload = ScheduledPayload(
        timestamp=tick, timezone="America/New_York", schedule_id="sched_1", upcoming=[tick]
    )
    parsed = ScheduledPayload.model_validate(payload.to_json())
    assert parsed.timestamp == tick and parsed.timestamp.tzinfo is not None
    assert parsed.last_timestamp is None and parsed.upcoming == [tick]
    assert parsed.local_timestamp().strftime("%H:%M %Z") == "03:00 EDT"


# -- properties -----------------------------------------------------------------------------

_minute = st.sampled_from(["*", "0", "*/7", "5,35", "10-20/5", "59"])
_hour = st.sampled_from(["*", "0", "1", "2", "*/5", "1-3", "9-17/4", "23"])
_dom = st.sampled_from(["*", "1", "L", "15", "28-31", "*/10"])
_month = st.sampled_from(["*", "2", "3,10,11", "jan-jun", "*/4"])
_dow = st.sampled_from(["*", "0", "7", "1-5", "sat,sun", "1L", "5#2"])
_zone = st.sampled_from(
    [
        "UTC",
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "America/Santiago",
    ]
)
_after = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)


def _matches_wall(expression: str, wall: datetime) -> bool:
    return any(croniter.match(form, wall) for form in parse_cron(expression).engine_forms)


@settings(max_examples=150, deadline=None)
@given(minute=_minute, hour=_hour, dom=_dom, month=_month, dow=_dow, zone=_zone, after=_after)
def test_every_preview_time_matches_in_local_time_and_strictly_increases(
    minute, hour, dom, month, dow, zone, after
):
    expression = f"{minute} {hour} {dom} {month} {dow}"
    tz = ZoneInfo(zone)
    times = preview(expression, timezone=zone, after=after, count=6)
    assert len(times) == 6
    assert times[0] > after
    assert all(a < b for a, b in itertools.pairwise(times))
    for t in times:
        assert t.second == 0 and t.microsecond == 0
        wall = t.astimezone(tz).replace(tzinfo=None)
        if _matches_wall(expression, wall):
            continue
        # Otherwise the tick is a time that did not exist (a spring-forward gap) moved to
        # the first valid instant, which is the end of that gap.
        before = (t - timedelta(minutes=1)).astimezone(tz)
        assert before.utcoffset() != t.astimezone(tz).utcoffset(), (expression, zone, t)
        gap = int((t.astimezone(tz).utcoffset() - before.utcoffset()).total_seconds() // 60)
        skipped = [wall - timedelta(minutes=m) for m in range(1, gap + 1)]
        assert any(_matches_wall(expression, w) for w in skipped), (expression, zone, t)


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 0 1 1 0", "At 00:00, on day 1 of the month or on Sunday, only in January"),
        ("0 0 1,15 * 1-5", "At 00:00, on day 1 and 15 of the month or Monday through Friday"),
        ("0 9 1 * *", "At 09:00, on day 1 of the month"),
        ("0 9 * * 1", "At 09:00, only on Monday"),
    ],
)
def test_both_day_fields_restricted_are_described_as_either(expression, words):
    assert describe(expression) == words
    if " or " in words:  # what the words say is what fires: the 1st and the Sundays
        after = "2025-12-31T12:00:00+00:00"
        days = {d.day for d in preview(expression, after=after, count=6)}
        assert 1 in days and len(days) > 2


@pytest.mark.parametrize(
    ("expression", "words", "weekdays"),
    [
        ("0 0 * * 7/2", "At 00:00, only on Sunday", {"Sun"}),
        ("0 0 * * 5/3", "At 00:00, only on Friday", {"Fri"}),
        ("0 0 * * 1/2", "At 00:00, only on Monday, Wednesday, and Friday", {"Mon", "Wed", "Fri"}),
        (
            "30 8 * * mon/2",
            "At 08:30, only on Monday, Wednesday, and Friday",
            {"Mon", "Wed", "Fri"},
        ),
    ],
)
def test_a_stepped_day_of_week_is_described_by_the_days_it_fires_on(expression, words, weekdays):
    """The describing library read ``7/2`` as "every 2 days of the week, Sunday through
    Saturday"; it fires on Sundays only."""
    assert describe(expression) == words
    fired = preview(expression, after="2026-01-01T00:00:00+00:00", count=12)
    assert {t.strftime("%a") for t in fired} == weekdays


def test_the_last_day_in_a_list_of_days_of_the_month_is_named():
    assert describe("0 0 1,L * *") == "At 00:00, on day 1 and the last day of the month"
    fired = preview("0 0 1,L * *", after="2026-02-01T12:00:00+00:00", count=3)
    assert [(t.month, t.day) for t in fired] == [(2, 28), (3, 1), (3, 31)]


def test_preview_takes_an_iso_string_with_its_offset():
    expected = [datetime(2030, 1, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, 2, tzinfo=UTC)]
    assert preview("0 * * * *", after="2030-01-01T00:00:00+00:00", count=2) == expected
    with pytest.raises(ValueError, match="aware"):  # as a naive datetime is
        preview("0 * * * *", after="2030-01-01")
    # The message names the string given, and how to give it an offset.
    with pytest.raises(InvalidScheduleError) as info:
        preview("0 * * * *", after="2030-01-01T09:00")
    assert str(info.value) == (
        "after='2030-01-01T09:00' has no UTC offset; give an aware time, "
        "e.g. '2030-01-01T09:00:00+00:00'"
    )
    with pytest.raises(InvalidScheduleError, match="after='soon' is not an ISO 8601"):
        preview("0 * * * *", after="soon")


def test_preview_takes_a_zone_object_as_schedules_create_does():
    by_name = preview("0 9 * * *", timezone="Europe/Paris", after="2030-01-01T00:00:00+00:00")
    by_zone = preview(
        "0 9 * * *", timezone=ZoneInfo("Europe/Paris"), after="2030-01-01T00:00:00+00:00"
    )
    assert by_zone == by_name


# -- both day fields: which days fire -------------------------------------------------------

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _values(item: str, low: int, high: int) -> set[int]:
    """The values of one plain list item (``*``, ``a``, ``a-b``, each with ``/step``)."""
    base, _, step = item.partition("/")
    if base in ("*", "?"):
        start, end = low, high
    else:
        first, _, last = base.partition("-")
        start = _DAY_NAMES.index(first) if first in _DAY_NAMES else int(first)
        end = (_DAY_NAMES.index(last) if last in _DAY_NAMES else int(last)) if last else None
        if end is None:
            end = high if step else start
    return set(range(start, end + 1, int(step or 1)))


def _day_matches(field: str, day: datetime, *, of_month: bool) -> bool:
    last_day = ((day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)).day
    weekday = (day.weekday() + 1) % 7  # Sunday 0

    def item_matches(item: str) -> bool:
        if of_month:
            return day.day == last_day if item == "L" else day.day in _values(item, 1, 31)
        if item.endswith("L"):  # the last such weekday of the month
            return weekday == int(item[:-1]) % 7 and day.day > last_day - 7
        if "#" in item:  # the nth such weekday of the month
            wanted, nth = item.split("#")
            return weekday == int(wanted) % 7 and (day.day - 1) // 7 + 1 == int(nth)
        return weekday in {v % 7 for v in _values(item, 0, 7)}

    return any(item_matches(item) for item in field.split(","))


def _restricts(field: str, *, of_month: bool) -> bool:
    """A day field restricts unless its days are every day of its field: with ``L`` in
    the day of month, days 1-30 and L are every day of every month."""
    items = field.split(",")
    plain = [item for item in items if not any(c in item for c in "L#")]
    low, high = (1, 31) if of_month else (0, 7)
    values = set().union(*(_values(item, low, high) for item in plain))
    if not of_month:
        return {v % 7 for v in values} != set(range(7))
    return not set(range(1, 31 if "L" in items else 32)) <= values


def _fires_on(dom: str, dow: str, day: datetime) -> bool:
    """The documented rule, written out: both restricted - either; else the one that is."""
    on_date = _day_matches(dom, day, of_month=True)
    on_weekday = _day_matches(dow, day, of_month=False)
    if _restricts(dom, of_month=True) and _restricts(dow, of_month=False):
        return on_date or on_weekday
    if _restricts(dom, of_month=True):
        return on_date
    return on_weekday if _restricts(dow, of_month=False) else True


_DAY_PAIRS = [
    ("*/2", "1"),  # Vixie/cronie: only odd Mondays; here the odd days and the Mondays
    ("*/2", "mon-fri"),
    ("1", "*/2"),  # Vixie/cronie: the 1st when it is a Sun/Tue/Thu/Sat
    ("*/10", "1L"),
    ("L", "*/3"),
    ("1,15", "1-5"),
    ("L", "5"),
    ("13", "5"),
    ("*/2", "5#2"),
    ("1-31", "1"),  # names every day: does not restrict (Vixie: every day)
    ("*/1", "1L"),
    ("*,1", "1"),
    ("1,2-31", "1"),
    ("1", "0-6"),
    ("1", "1-7"),
    ("1", "sun-sat"),
    ("15", "*/1"),
    ("?", "1"),
    ("2-30/7", "?"),
    ("*", "0,7"),
    ("1-31,L", "1"),  # every day, whichever way it is written: Mondays only
    ("L,1-31", "1L"),
    ("1-30,L", "5"),  # L is the 31st, or the month has none
    ("*,L", "1"),
    ("1-29,L", "1"),  # no 30th of a 31-day month: restricts
    ("2-31,L", "*"),  # thirty numbers and L: croniter alone took it for every day
    ("1-27,29-31,L", "*"),
    ("2-31,L", "1,5L"),
    ("15", "0-6,5L"),
    ("15", "1-7,2#3"),
    ("L", "sun-sat,1L"),
    ("1-30,L", "0-6,5#2"),
    ("*", "1,5L"),  # plain days with nL / n#k: croniter alone refuses the mix
    ("13", "1,5L"),
    ("?", "1-5,5#2"),
    ("L", "0,6,1L"),
    ("1-31,L", "mon-fri,5L"),
]


@pytest.mark.parametrize(("dom", "dow"), _DAY_PAIRS)
def test_both_day_fields_fire_on_the_days_the_documented_rule_gives(dom, dow):
    expression = f"0 0 {dom} * {dow}"
    start = datetime(2024, 12, 31, tzinfo=UTC)
    expected = [
        start + timedelta(days=n)
        for n in range(1, 1200)
        if _fires_on(dom, dow, start + timedelta(days=n))
    ][:30]
    assert fire_times(expression, "UTC", after=start, count=30) == expected


def test_a_stepped_day_of_month_with_a_day_of_week_fires_on_either():
    times = preview("0 0 */2 * 1", after="2025-01-01T00:00:00+00:00", count=8)
    assert [t.strftime("%d %a") for t in times] == [
        "03 Fri", "05 Sun", "06 Mon", "07 Tue", "09 Thu", "11 Sat", "13 Mon", "15 Wed",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 0 1-31 * 1", "At 00:00, only on Monday"),
        ("0 0 1-31,L * 1", "At 00:00, only on Monday"),
        ("0 0 1-30,L * 5", "At 00:00, only on Friday"),
        ("0 0 1-31,L * 1L", "At 00:00, on the last Monday of the month"),
        ("0 0 15 * 0-6,5L", "At 00:00, on day 15 of the month"),
        ("0 0 15 * 1-7,2#3", "At 00:00, on day 15 of the month"),
        ("0 0 1-31,L * *", "At 00:00"),
        ("0 0 1 * 0-6", "At 00:00, on day 1 of the month"),
        ("0 0 */1 * 1L", "At 00:00, on the last Monday of the month"),
        ("0 0 1 * *,1", "At 00:00, on day 1 of the month"),
    ],
)
def test_a_day_field_that_names_every_day_is_not_described_as_a_restriction(expression, words):
    assert describe(expression) == words


@pytest.mark.parametrize(
    ("expression", "words", "days"),
    [
        ("0 0 */2 * *", "At 00:00, on the odd days of the month", range(1, 32, 2)),
        ("0 0 ?/2 * *", "At 00:00, on the odd days of the month", range(1, 32, 2)),
        ("0 0 2/2 * *", "At 00:00, on the even days of the month", range(2, 31, 2)),
        ("0 0 2-30/2 * *", "At 00:00, on the even days of the month", range(2, 31, 2)),
        (
            "0 0 */3 * *",
            "At 00:00, on day 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, and 31 of the month",
            range(1, 32, 3),
        ),
        ("0 0 5/10 * *", "At 00:00, on day 5, 15, and 25 of the month", (5, 15, 25)),
        ("0 0 1-10/2 * *", "At 00:00, on day 1, 3, 5, 7, and 9 of the month", range(1, 10, 2)),
    ],
)
def test_a_stepped_day_of_month_is_described_by_the_days_it_fires_on(expression, words, days):
    """The step starts again each month: ``*/2`` fires on the 31st and on the 1st after
    it, which "every 2 days" would not."""
    assert describe(expression) == words
    times = fire_times(expression, "UTC", after=datetime(2024, 12, 31, tzinfo=UTC), count=200)
    assert {t.day for t in times} == set(days)
    if 31 in days and 1 in days:
        assert datetime(2025, 1, 31, tzinfo=UTC) in times
        assert datetime(2025, 2, 1, tzinfo=UTC) in times


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 0 */2 * 1", "At 00:00, on the odd days of the month or on Monday"),
        ("0 0 */2,L * *", "At 00:00, on the odd days and the last day of the month"),
        ("0 0 */2 1 *", "At 00:00, on the odd days of the month, only in January"),
        (
            "0 0 */2 * 1L",
            "At 00:00, on the odd days of the month or on the last Monday of the month",
        ),
    ],
)
def test_a_stepped_day_of_month_is_named_with_the_other_fields(expression, words):
    assert describe(expression) == words


@pytest.mark.parametrize(
    ("zone", "hint"),
    [("europe/london", "did you mean 'Europe/London'?"), ("utc", "did you mean 'UTC'?")],
)
def test_a_time_zone_name_in_the_wrong_case_is_refused_with_the_right_spelling(zone, hint):
    with pytest.raises(InvalidScheduleError) as refused:
        get_zone(zone)
    assert f"timezone {zone!r} is not an IANA time zone name; {hint}" in str(refused.value)


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("Australia/Lord_Howe", "2026-12-08 02:00 (+11:00)"),  # no abbreviation: "+11" once
        ("America/Sao_Paulo", "2026-12-07 12:00 (-03:00)"),
        ("America/New_York", "2026-12-07 10:00 EST (-05:00)"),
        ("Asia/Kolkata", "2026-12-07 20:30 IST (+05:30)"),
    ],
)
def test_a_fire_time_is_shown_with_its_zones_abbreviation_or_its_offset_once(zone, shown):
    assert format_local(datetime(2026, 12, 7, 15, 0, tzinfo=UTC), zone) == shown


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 0 * * 1,5L", "At 00:00, only on Monday or on the last Friday of the month"),
        ("0 0 * * 1,2#3", "At 00:00, only on Monday or on the third Tuesday of the month"),
        (
            "0 0 13 * 1,5L",
            "At 00:00, on day 13 of the month or on Monday or on the last Friday of the month",
        ),
        (
            "0 0 1-31,L * 1-5,5L",
            "At 00:00, Monday through Friday or on the last Friday of the month",
        ),
    ],
)
def test_plain_days_of_week_listed_with_last_or_nth_ones_are_described_apart(expression, words):
    assert describe(expression) == words
