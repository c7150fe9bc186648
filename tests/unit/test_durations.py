from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trigger_celery.core.durations import (
    BeyondHorizonError,
    format_duration,
    parse_delay,
    parse_duration,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("88s", 88),
        ("1h52m18s", 6738),
        ("2d", 172_800),
        ("1w", 604_800),
        (" 5m ", 300),
        ("1d12h", 129_600),
        (30, 30),
        (2.5, 2.5),
        (timedelta(minutes=3), 180),
    ],
)
def test_accepted_durations(value, seconds):
    assert parse_duration(value, name="ttl").total_seconds() == seconds


@pytest.mark.parametrize(
    "value", ["5 minutes", "", "h", "1x", "-5s", "1h 2m", True, None, [1], -1, float("nan")]
)
def test_bad_duration_is_a_value_error_naming_option_and_value(value):
    with pytest.raises(ValueError) as info:
        parse_duration(value, name="ttl")
    assert "ttl" in str(info.value)
    assert repr(value) in str(info.value)


def test_duration_below_minimum_names_the_minimum():
    with pytest.raises(ValueError, match=r"max_duration: '4s' is below the minimum of 5s"):
        parse_duration("4s", name="max_duration", minimum=5)


def test_a_delay_date_more_than_ten_years_ahead_is_refused():
    with pytest.raises(ValueError, match=r"delay: '9999-12-31' is more than the maximum of 10"):
        parse_delay("9999-12-31", now=NOW)
    with pytest.raises(ValueError, match="more than the maximum of 10 years"):
        parse_delay(NOW + timedelta(days=3660), now=NOW)
    assert parse_delay(NOW + timedelta(days=3600), now=NOW) == NOW + timedelta(days=3600)
    # Past the end of the calendar once in UTC: the same refusal, not an OverflowError.
    with pytest.raises(BeyondHorizonError, match=r"'9999-12-31T23:00-05:00' is more than"):
        parse_delay("9999-12-31T23:00-05:00", now=NOW)


def test_delay_takes_durations_iso_strings_and_datetimes():
    assert parse_delay("1h", now=NOW) == NOW + timedelta(hours=1)
    assert parse_delay("2026-03-02T09:00:00Z", now=NOW) == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert parse_delay("2026-03-02", now=NOW) == datetime(2026, 3, 2, tzinfo=UTC)
    tokyo = timezone(timedelta(hours=9))
    assert parse_delay(datetime(2026, 3, 2, 9, tzinfo=tokyo), now=NOW) == datetime(
        2026, 3, 2, 0, tzinfo=UTC
    )


def test_naive_datetime_delay_is_utc():
    assert parse_delay(datetime(2026, 3, 1, 13, 0), now=NOW) == datetime(2026, 3, 1, 13, tzinfo=UTC)


def test_delay_in_the_past_means_no_delay():
    assert parse_delay("2020-01-01T00:00:00Z", now=NOW) is None
    assert parse_delay(0, now=NOW) is None


def test_unparseable_delay_is_never_silently_ignored():
    with pytest.raises(ValueError, match="'next tuesday'"):
        parse_delay("next tuesday", now=NOW)


@given(st.integers(min_value=1, max_value=10 * 604_800))
def test_format_then_parse_round_trips(seconds):
    assert parse_duration(format_duration(seconds), name="x").total_seconds() == seconds
