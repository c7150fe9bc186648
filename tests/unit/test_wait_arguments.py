"""``wait.for_`` and ``wait.until`` refuse what is not a duration (or a date within 10
years) before they look for their run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from trigger_celery import wait
from trigger_celery.errors import OutsideRunError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "wait.for_ needs a duration: seconds="),
        ({"seconds": float("nan")}, "wait.for_ seconds: nan is not a finite duration"),
        (
            {"seconds": 1e15},
            "wait.for_ seconds: 1000000000000000.0 is longer than the maximum of 10 years",
        ),
        ({"weeks": 600}, "wait.for_: 362880000.0 is longer than the maximum of 10 years"),
        ({"minutes": -1}, "wait.for_ minutes: -1 is negative"),
        ({"hours": "5"}, "wait.for_: hours='5' is not a number"),
        ({"days": True}, "wait.for_: days=True is not a number"),
    ],
)
def test_a_bad_duration_is_named(kwargs, message):
    with pytest.raises(ValueError) as caught:
        wait.for_(**kwargs)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "when",
    [
        datetime(9999, 12, 31, tzinfo=UTC),
        datetime(9999, 12, 31),  # naive: UTC
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-12))),
        datetime.now(UTC) + timedelta(days=3651),
    ],
)
def test_a_wait_until_more_than_10_years_ahead_is_named(when):
    with pytest.raises(ValueError) as caught:
        wait.until(when)
    # Named as ISO 8601 reads, not as its repr.
    said = f"wait.until: {when.isoformat()!r} is more than the maximum of 10 years"
    assert said in str(caught.value)


@pytest.mark.parametrize(
    "when",
    [
        datetime(2000, 1, 1, tzinfo=UTC),  # past: the wait is over at once
        datetime(2000, 1, 1),
        datetime.now(UTC) + timedelta(days=3640),
        datetime.now() + timedelta(days=3640),
    ],
)
def test_a_wait_until_in_the_past_or_within_10_years_passes_to_its_run(when):
    with pytest.raises(OutsideRunError):  # the next thing it checks: taken
        wait.until(when)
