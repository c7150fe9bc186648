from datetime import UTC, datetime, timedelta

import pytest

from trigger_celery.core.options import (
    TRIGGER_OPTION_NAMES,
    QueueOptions,
    parse_rate_limit,
    parse_trigger_options,
    task_id_problem,
)
from trigger_celery.core.queue_names import queue_name_problem


def test_every_spec_option_name_is_accepted():
    assert set(TRIGGER_OPTION_NAMES) == {
        "delay", "ttl", "idempotency_key", "idempotency_key_ttl", "debounce", "queue",
        "concurrency_key", "max_attempts", "tags", "metadata", "max_duration", "priority",
        "region", "machine",
    }  # fmt: skip


def test_valid_options_are_normalised():
    opts = parse_trigger_options(
        {"ttl": "10m"},
        idempotency_key=["a", "b"],
        idempotency_key_ttl=timedelta(days=1),
        debounce={"key": "k", "delay": "5s", "mode": "trailing", "max_delay": "1m"},
        queue="paid",
        concurrency_key="user_1",
        max_attempts=5,
        tags="one",
        metadata={"when": datetime(2026, 1, 1, tzinfo=UTC)},
        max_duration="5m",
        priority=10,
        region="eu",
        machine="small-2x",
    )
    assert opts.ttl == 600
    assert opts.idempotency_key == ("a", "b")
    assert opts.idempotency_key_ttl == 86_400
    assert opts.debounce is not None and opts.debounce.delay == 5 and opts.debounce.max_delay == 60
    assert opts.tags == ("one",)
    assert opts.metadata == {"when": "2026-01-01T00:00:00+00:00"}
    assert opts.max_duration == 300
    assert opts.priority == 10.0
    assert opts.to_dict()["tags"] == ["one"]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_trigger_options(delay="1h").delay_until(now) == now + timedelta(hours=1)


@pytest.mark.parametrize("max_delay", ["5s", 0, "10s"])
def test_a_debounce_max_delay_not_longer_than_its_delay_is_refused(max_delay):
    # Such a window never takes a second trigger: debouncing would be silently off.
    with pytest.raises(ValueError, match=r"debounce.max_delay \(\d+s\).*debounce.delay \(10s\)"):
        parse_trigger_options(debounce={"key": "k", "delay": "10s", "max_delay": max_delay})


def test_a_debounce_key_longer_than_its_column_is_refused_by_name():
    assert parse_trigger_options(debounce={"key": "k" * 255, "delay": "1s"}).debounce
    with pytest.raises(
        ValueError, match=r"debounce.key: 'kkk.*is 256 characters; the limit is 255"
    ):
        parse_trigger_options(debounce={"key": "k" * 256, "delay": "1s"})


def test_delay_with_debounce_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"delay='1h' and debounce=.*'key': 'k'"):
        parse_trigger_options(debounce={"key": "k", "delay": "1s"}, delay="1h")


def test_unknown_option_names_are_listed_with_the_accepted_ones():
    with pytest.raises(ValueError) as info:
        parse_trigger_options(delayy="1h", retries=3)
    message = str(info.value)
    assert "'delayy'" in message and "'retries'" in message
    assert "accepted: delay, ttl" in message


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("delay", "tomorrow-ish"),
        ("delay", [1]),
        ("ttl", "5 minutes"),
        ("ttl", 0),
        ("ttl", -3),
        ("idempotency_key", ""),
        ("idempotency_key", 42),
        ("idempotency_key", "x" * 2049),
        ("idempotency_key_ttl", "forever"),
        ("debounce", {"key": "k"}),
        ("debounce", {"key": "k", "delay": "5s", "mode": "sideways"}),
        ("debounce", {"key": "", "delay": "5s"}),
        ("debounce", "k"),
        ("queue", ""),
        ("queue", 7),
        ("concurrency_key", 1.5),
        ("concurrency_key", True),
        ("concurrency_key", ""),
        ("max_attempts", 0),
        ("max_attempts", 251),
        ("max_attempts", "3"),
        ("max_attempts", True),
        ("tags", ["a"] * 11),
        ("tags", [""]),
        ("tags", ["x" * 129]),
        ("tags", 5),
        ("metadata", ["not", "a", "dict"]),
        ("metadata", {"big": "x" * 300_000}),
        ("metadata", {"obj": object()}),
        ("max_duration", 4),
        ("max_duration", "soon"),
        ("priority", "high"),
        ("priority", float("inf")),
        ("priority", -1e12),
        ("region", ""),
        ("machine", "huge-9x"),
    ],
)
def test_bad_option_value_is_a_clear_error_naming_option_and_value(option, value):
    with pytest.raises(ValueError) as info:
        parse_trigger_options(**{option: value})
    message = str(info.value)
    assert option in message
    shown = repr(value)
    assert (
        shown[:40] in message or str(len(value) if isinstance(value, str | list) else "") in message
    )


def test_queue_declaration_limits():
    assert QueueOptions(name="q", concurrency_limit=3).concurrency_limit == 3
    for bad in (0, -1, "2", 1.5):
        with pytest.raises(ValueError, match="concurrency_limit"):
            QueueOptions(name="q", concurrency_limit=bad)


def test_concurrency_key_limit_is_the_per_key_limit_by_its_other_name():
    assert QueueOptions(name="q", concurrency_key_limit=2, total_limit=5).concurrency_limit == 2
    assert QueueOptions(concurrency_key_limit=2, concurrency_limit=2).concurrency_limit == 2
    with pytest.raises(ValueError, match="concurrency_key_limit=2 and concurrency_limit=3"):
        QueueOptions(name="q", concurrency_key_limit=2, concurrency_limit=3)
    with pytest.raises(ValueError, match="concurrency_limit"):
        QueueOptions(name="q", concurrency_key_limit=0)


def test_rate_limits():
    assert parse_rate_limit("100/m") == (100, 60.0)
    assert parse_rate_limit("5/s") == (5, 1.0)
    with pytest.raises(ValueError, match="'fast'"):
        parse_rate_limit("fast")


def test_a_tag_given_twice_is_kept_once_in_order():
    assert parse_trigger_options(tags=["b", "a", "b"]).tags == ("b", "a")


def test_an_int_concurrency_key_is_its_string():
    assert parse_trigger_options(concurrency_key=42).concurrency_key == "42"


@pytest.mark.parametrize("items", [5, "abc", {"payload": 1}, None])
def test_a_batch_that_is_not_a_list_of_items_is_refused_by_name(items):
    from trigger_celery.engine.batches import items_of

    with pytest.raises(TypeError, match=r"a batch takes a list of items \(dicts\), got"):
        items_of(items)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tags": ["ok", "a\x00"]}, "tags: 'a\\x00' contains a NUL character"),
        ({"tags": "\ud800"}, "tags: '\\ud800' contains a lone surrogate"),
        ({"metadata": {"a": "\x00"}}, "metadata['a'] contains a NUL character"),
        ({"metadata": {"a\x00": 1}}, "metadata has a key 'a\\x00' that contains a NUL"),
        ({"idempotency_key": "k\x00"}, "idempotency_key: 'k\\x00' contains a NUL"),
        ({"idempotency_key": ["k", "\ud800"]}, "idempotency_key: '\\ud800' contains a lone"),
        ({"concurrency_key": "c\x00"}, "concurrency_key: 'c\\x00' contains a NUL"),
        ({"region": "r\x00"}, "region: 'r\\x00' contains a NUL"),
        ({"queue": "q\x00"}, "queue: 'q\\x00' contains a NUL"),
        ({"debounce": {"key": "d\x00", "delay": "5s"}}, "debounce.key: 'd\\x00' contains a NUL"),
    ],
)
def test_an_option_string_the_database_cannot_store_is_refused(options, message):
    with pytest.raises(ValueError) as info:
        parse_trigger_options(options)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("task_id", "message"),
    [
        (" ", "task id must be a non-empty string of at most 255 characters, got ' '"),
        ("x" * 256, "task id must be a non-empty string of at most 255 characters"),
        (5, "task id must be a non-empty string of at most 255 characters, got 5"),
        ("a\x00b", "task id 'a\\x00b' contains a NUL character"),
        # A task id names its own queue: no control character (the store's separator).
        ("a\x1fb", "task id 'a\\x1fb' contains a control character ('\\x1f')"),
        ("tab\tid", "task id 'tab\\tid' contains a control character ('\\t')"),
    ],
)
def test_one_task_id_rule(task_id, message):
    assert message in (task_id_problem(task_id) or "")
    assert task_id_problem("x" * 255) is None


def test_an_int_debounce_key_is_its_string():
    options = parse_trigger_options(debounce={"key": 42, "delay": "5s"})
    assert options.debounce is not None and options.debounce.key == "42"


def test_a_per_key_limit_above_the_total_is_kept_as_declared():
    """Harmless (each key is held to the total) and maybe set per environment from two
    settings: refusing it at import would stop every worker. The system check says so
    (W016, test_definitions)."""
    above = QueueOptions(name="q", concurrency_key_limit=3, total_limit=2)
    assert (above.concurrency_limit, above.total_limit) == (3, 2)


# One rule for a queue's name wherever it comes in: queue(name=...), a task's id, the
# trigger option queue= (and through it the django.tasks backend's queue names).
BAD_QUEUE_NAMES = [
    ("tab\tq", "contains a control character ('\\t')"),
    ("a\x1fb", "contains a control character ('\\x1f')"),
    (".", "has a '.' or '..' path segment"),
    ("..", "has a '.' or '..' path segment"),
    ("a/../b", "has a '.' or '..' path segment"),
    ("./x", "has a '.' or '..' path segment"),
    ("x/.", "has a '.' or '..' path segment"),
]


@pytest.mark.parametrize(("name", "problem"), BAD_QUEUE_NAMES)
def test_the_trigger_option_queue_takes_the_queue_name_rule(name, problem):
    with pytest.raises(ValueError) as info:
        parse_trigger_options(queue=name)
    assert str(info.value).startswith(f"queue: {name!r} {problem}")


@pytest.mark.parametrize(("name", "problem"), BAD_QUEUE_NAMES)
def test_a_task_id_takes_the_queue_name_rule(name, problem):
    assert task_id_problem(name) == f"task id {name!r} {queue_name_problem(name)}"
    assert problem in (queue_name_problem(name) or "")


@pytest.mark.parametrize("name", ["a.b", "a/b", "...", "a/.../b", ".hidden", "v1.2/x."])
def test_dots_that_are_not_a_whole_path_segment_are_fine(name):
    assert queue_name_problem(name) is None
    assert parse_trigger_options(queue=name).queue == name
