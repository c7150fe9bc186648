import pytest

from trigger_celery.core.retry import RetryPolicy, next_delay_ms

NO_JITTER = RetryPolicy(randomize=False)


def test_defaults_are_trigger_dev_defaults():
    p = RetryPolicy()
    assert (p.max_attempts, p.factor, p.min_timeout_in_ms, p.max_timeout_in_ms, p.randomize) == (
        3,
        2.0,
        1000,
        60_000,
        True,
    )


def test_delay_follows_the_formula_without_jitter():
    p = RetryPolicy(max_attempts=10, randomize=False)
    assert [next_delay_ms(p, n) for n in range(1, 8)] == [
        1000,
        2000,
        4000,
        8000,
        16000,
        32000,
        60000,
    ]


def test_jitter_multiplies_by_r_in_one_to_two():
    p = RetryPolicy(max_attempts=5)
    assert next_delay_ms(p, 2, rand=lambda: 0.5) == 3000
    draws = [next_delay_ms(p, 1) for _ in range(2000)]
    assert all(1000 <= d <= 2000 for d in draws)  # round() may reach 2000
    assert max(draws) - min(draws) > 500  # really random


def test_cap_applies_after_jitter():
    p = RetryPolicy(max_attempts=5, min_timeout_in_ms=40_000, max_timeout_in_ms=60_000)
    assert next_delay_ms(p, 1, rand=lambda: 0.9) == 60_000


def test_no_retry_once_attempt_reaches_max_attempts():
    assert next_delay_ms(NO_JITTER, 2) == 2000
    assert next_delay_ms(NO_JITTER, 3) is None
    assert next_delay_ms(RetryPolicy(max_attempts=1), 1) is None


def test_from_value_normalises_shorthands():
    assert RetryPolicy.from_value(None) == RetryPolicy()
    assert RetryPolicy.from_value(5).max_attempts == 5
    assert RetryPolicy.from_value({"factor": 3}).factor == 3
    assert (
        RetryPolicy.from_value({"factor": 3}, default=RetryPolicy(max_attempts=9)).max_attempts == 9
    )


def test_max_attempts_over_250_is_refused_naming_the_value():
    with pytest.raises(ValueError, match=r"251.*cap is 250"):
        RetryPolicy(max_attempts=251)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"max_attempt": 3}, "'max_attempt'"),
        ({"max_attempts": 0}, "max_attempts must be an int >= 1, got 0"),
        ({"max_attempts": "3"}, "got '3'"),
        ({"factor": 0}, "factor must be a finite number > 0, got 0"),
        ({"factor": float("inf")}, "factor must be a finite number > 0, got inf"),
        ({"min_timeout_in_ms": 5000, "max_timeout_in_ms": 10}, "above"),
        ({"randomize": "yes"}, "'yes'"),
        ("often", "'often'"),
        # Over 10 years between attempts: the retry's date would overflow in the worker.
        ({"max_timeout_in_ms": 10**18, "min_timeout_in_ms": 10**18}, "is 1000000000000000000"),
        ({"max_timeout_in_ms": 315_360_000_001}, "the cap is 315360000000 (10 years)"),
    ],
)
def test_bad_retry_options_name_key_and_value(value, fragment):
    with pytest.raises(ValueError) as info:
        RetryPolicy.from_value(value)
    assert fragment in str(info.value)


def test_a_large_factor_waits_the_cap_instead_of_overflowing():
    policy = RetryPolicy(max_attempts=5, factor=1e300, randomize=False)
    assert next_delay_ms(policy, 3) == policy.max_timeout_in_ms
