import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from uuid import UUID

import pytest
from pydantic import BaseModel

from trigger_celery.core.idempotency import hash_key
from trigger_celery.core.ids import first_id_at, id_time, last_id_at, new_id
from trigger_celery.core.serialization import (
    MAX_DEPTH,
    dumps,
    encode,
    escape_json,
    escape_text,
    to_jsonable,
)
from trigger_celery.errors import SerializationError


class Color(Enum):
    RED = "red"


class Model(BaseModel):
    when: datetime
    amount: Decimal


@dataclasses.dataclass
class Point:
    x: int


def test_rich_values_are_encoded():
    value = {
        "model": Model(when=datetime(2026, 1, 1, tzinfo=UTC), amount=Decimal("1.50")),
        "uuid": UUID(int=1),
        "day": date(2026, 1, 2),
        "enum": Color.RED,
        "tuple": (1, 2),
        "set": {3, 1},
        "point": Point(4),
        1: "int key",
    }
    assert to_jsonable(value) == {
        "model": {"when": "2026-01-01T00:00:00Z", "amount": "1.50"},
        "uuid": "00000000-0000-0000-0000-000000000001",
        "day": "2026-01-02",
        "enum": "red",
        "tuple": [1, 2],
        "set": [1, 3],
        "point": {"x": 4},
        "1": "int key",
    }


def test_non_serializable_value_names_its_type_and_path():
    with pytest.raises(SerializationError) as info:
        to_jsonable({"conn": [1, object()]}, what="output")
    assert "output is not JSON-serializable" in str(info.value)
    assert "'object'" in str(info.value)
    assert "output['conn'][1]" in str(info.value)


def test_nan_is_refused():
    with pytest.raises(SerializationError, match="nan"):
        dumps({"x": float("nan")})


def test_ids_sort_by_creation_and_carry_their_time():
    ids = [new_id("run") for _ in range(500)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 500
    assert all(i.startswith("run_") and len(i) == 30 for i in ids)
    assert abs((id_time(ids[0]) - datetime.now(UTC)).total_seconds()) < 5


def test_an_id_is_its_ms_in_ten_characters_then_its_random_bits_in_sixteen():
    import random

    from trigger_celery.core.ids import _encode, _encode_id

    rng = random.Random(7)
    cases = [(0, 0), (2**48 - 1, 2**80 - 1), (1, 1), (2**47, 2**79)]
    cases += [(rng.getrandbits(48), rng.getrandbits(80)) for _ in range(2000)]
    for ms, rand in cases:
        assert _encode_id(ms, rand) == _encode(ms, 10) + _encode(rand, 16)


def test_an_id_made_at_an_instant_sorts_between_the_first_and_last_ids_of_that_instant():
    moment = datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)
    made = [new_id("run", at=moment) for _ in range(20)]
    assert all(first_id_at("run", moment) <= m <= last_id_at("run", moment) for m in made)
    assert {id_time(m) for m in made} == {moment}
    a_millisecond = timedelta(milliseconds=1)
    assert last_id_at("run", moment - a_millisecond) < min(made)
    assert max(made) < first_id_at("run", moment + a_millisecond)
    assert len(first_id_at("run", moment)) == len(made[0]) == len(last_id_at("run", moment))


def test_idempotency_keys_hash_parts_and_scope():
    assert hash_key("order-1") == hash_key(["order-1"])
    assert hash_key("order-1") != hash_key("order-1", ["run_x"])
    assert len(hash_key("order-1")) == 64
    pre = hash_key("abc")
    assert hash_key(pre) == pre  # a 64-hex key is taken as already hashed


def test_idempotency_key_over_2048_characters_is_refused():
    with pytest.raises(ValueError, match="2049 characters; the limit is 2048"):
        hash_key("k" * 2049)
    with pytest.raises(ValueError):
        hash_key([])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"s": "a\x00b"}, "payload['s'] contains a NUL character"),
        ({"a": [1, {"k\x00": 1}]}, "payload['a'][1] has a key 'k\\x00' that contains a NUL"),
        (["ok", "\ud800"], "payload[1] contains a lone surrogate ('\\ud800')"),
        ({"\udfff": 1}, "payload has a key '\\udfff' that contains a lone surrogate"),
    ],
)
def test_a_string_the_database_cannot_store_is_refused_naming_its_path(value, message):
    with pytest.raises(SerializationError) as info:
        encode(to_jsonable(value, what="payload"), what="payload")
    assert message in str(info.value)


def test_a_backslash_and_u0000_is_an_ordinary_string():
    assert encode({"s": "\\u0000"}) == b'{"s":"\\\\u0000"}'


def test_a_value_nested_too_deep_is_refused_naming_the_limit():
    deep: list = []
    inner = deep
    for _ in range(5000):
        inner.append([])
        inner = inner[0]
    with pytest.raises(
        SerializationError, match=f"payload is nested too deep: more than {MAX_DEPTH}"
    ):
        to_jsonable(deep, what="payload")
    ok: dict = {}
    inner_dict = ok
    for _ in range(MAX_DEPTH - 1):
        inner_dict["x"] = {}
        inner_dict = inner_dict["x"]
    assert to_jsonable(ok) == ok


def test_escape_text_keeps_what_the_database_cannot_store_as_escapes():
    assert escape_text("a\x00b\ud800") == "a\\x00b\\ud800"
    assert escape_text("plain") == "plain"
    assert escape_json({"k\x00": ["\x00", 1]}) == {"k\\x00": ["\\x00", 1]}


def test_an_idempotency_key_with_a_lone_surrogate_is_a_clear_error():
    with pytest.raises(ValueError, match="idempotency_key: '\\\\ud800' contains a lone surrogate"):
        hash_key("\ud800")
