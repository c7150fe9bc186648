"""A wrong trigger option is one short message naming the option and its value."""

from __future__ import annotations

import pytest

from tests.taskapp.tasks import echo
from trigger_celery import tasks
from trigger_celery.core.idempotency import refuse_lone_key_ttl
from trigger_celery.core.options import parse_trigger_options
from trigger_celery.errors import InvalidTriggerOptionError


def test_a_wrong_option_is_named_with_its_value_not_pydantics_dump():
    with pytest.raises(InvalidTriggerOptionError) as info:
        parse_trigger_options({"tags": ["a"]}, max_attempts="3")
    assert str(info.value) == "max_attempts: '3' is not an int"
    assert info.value.problems == [("max_attempts", "max_attempts: '3' is not an int")]
    assert isinstance(info.value, ValueError)


def test_every_wrong_option_is_named():
    with pytest.raises(InvalidTriggerOptionError) as info:
        parse_trigger_options(max_attempts=0, machine="huge")
    assert [option for option, _ in info.value.problems] == ["max_attempts", "machine"]
    assert "pydantic" not in str(info.value)


def test_a_key_ttl_without_a_key_is_refused_naming_the_value():
    with pytest.raises(InvalidTriggerOptionError) as info:
        refuse_lone_key_ttl({"tags": ["a"]}, {"idempotency_key_ttl": "1h"})
    assert str(info.value).startswith(
        "idempotency_key_ttl: '1h' is given without an idempotency_key, so it would do nothing"
    )
    assert [option for option, _ in info.value.problems] == ["idempotency_key_ttl"]


@pytest.mark.parametrize(
    ("options", "extra", "keyed"),
    [
        ({"idempotency_key": "k", "idempotency_key_ttl": "1h"}, {}, False),
        ({"idempotency_key_ttl": "1h"}, {"idempotency_key": ["a", "b"]}, False),
        ({"idempotency_key_ttl": "1h"}, {}, True),  # the batch's key
        ({"ttl": "1h"}, {}, False),
        (None, {}, False),
        ("not a dict", {}, False),  # parse_trigger_options names that one
    ],
)
def test_a_key_ttl_with_a_key_or_none_at_all_is_taken(options, extra, keyed):
    refuse_lone_key_ttl(options, extra, keyed=keyed)


def test_a_trigger_call_with_a_key_ttl_and_no_key_is_refused_before_any_write():
    # No database here: the refusal comes before the trigger looks for one.
    with pytest.raises(InvalidTriggerOptionError, match="idempotency_key_ttl: 60 is given"):
        tasks.trigger("echo", {}, idempotency_key_ttl=60)
    with pytest.raises(InvalidTriggerOptionError, match="idempotency_key_ttl: '1d' is given"):
        tasks.trigger("echo", {}, {"idempotency_key_ttl": "1d"})
    with pytest.raises(InvalidTriggerOptionError, match="idempotency_key_ttl: '1d' is given"):
        echo.trigger({}, {"idempotency_key_ttl": "1d"}, tags=["x"])
