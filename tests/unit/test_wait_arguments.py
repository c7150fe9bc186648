"""``wait.for_`` refuses what is not a duration before it looks for its run."""

from __future__ import annotations

import pytest

from trigger_celery import wait


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
