import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from uuid import UUID

import pytest
from pydantic import BaseModel

from trigger_celery.core.idempotency import hash_key
from trigger_celery.core.ids import first_id_at, id_time, last_id_at, new_id
from trigger_celery.core.serialization import dumps, to_jsonable
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
