"""A wrong trigger option is one short message naming the option and its value."""

from __future__ import annotations

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
