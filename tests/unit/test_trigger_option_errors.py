"""A wrong trigger option is one short message naming the option and its value."""

from __future__ import annotations

import re

import pytest

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


@pytest.mark.parametrize("region", ["eu.machine.large-1x", "eu,us", "e u", "-eu", "eu\n"])
def test_a_region_that_would_confuse_its_celery_queue_name_is_refused(region):
    # "eu.machine.large-1x" named the queue of region="eu", machine="large-1x"; "eu,us"
    # a queue no ``celery worker -Q`` can name (it splits on commas).
    with pytest.raises(InvalidTriggerOptionError, match=f"region: {re.escape(repr(region))}"):
        parse_trigger_options(region=region)


def test_a_region_of_letters_digits_dashes_and_underscores_is_taken():
    assert parse_trigger_options(region="us-east_1").region == "us-east_1"
