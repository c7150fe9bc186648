"""The ORM's UPDATE and INSERT statements, compiled once per shape.

A transition's UPDATE has the same text every time: only its parameters change.
Compiling it through the ORM (``UpdateQuery`` → SQL) costs about a quarter of a
millisecond, which was a quarter of an attempt's whole time in the worker.
:func:`update_sql` keeps the text per *shape* (model, the filter and value names, and
for each value whether it is None, a list of n items, or a plain value) and computes the
parameters directly, the way Django prepares them.

A shape is cached only after the first compile proved that the direct parameters equal
the ORM's own, so anything the direct way does not cover (an expression such as ``F()``,
a lookup prepared differently) is simply compiled every time. :class:`KeepFirst` is the
one expression with a shape of its own.

:func:`insert_row` does the same for a new row: every column, ``pre_save`` applied, as
``Model.save(force_insert=True)`` writes it, without the model signals (nothing in
trigger_celery listens to them, and a batch's rows never sent them).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from django.db import connection
from django.db.models import F, Model, Value
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Coalesce
from django.db.models.sql import InsertQuery, UpdateQuery

# Lookups whose parameters the direct way knows; any other is compiled every time.
_PARAM_LOOKUPS = frozenset({"exact", "lte", "lt", "gte", "gt"})
_cache: dict[Hashable, str] = {}


class KeepFirst(Coalesce):
    """``SET column = COALESCE(column, value)``: written once, then kept (a run's first
    start). One text for every value, so its UPDATE is cached like a plain value's."""

    def __init__(self, column: str, value: Any) -> None:
        super().__init__(column, Value(value))
        self.value = value


class Added(CombinedExpression):
    """``SET column = column + amount``. One text for every amount, so its UPDATE is
    cached like a plain value's."""

    def __init__(self, column: str, amount: int) -> None:
        super().__init__(F(column), self.ADD, Value(amount))
        self.amount = amount


def update_sql(
    model: type[Model], where: dict[str, Any], values: dict[str, Any]
) -> tuple[str, tuple[Any, ...]]:
    """``UPDATE model SET values WHERE where`` as SQL text and parameters."""
    key = _shape(model, where, values)
    if key is not None:
        sql = _cache.get((connection.vendor, key))
        if sql is not None:
            return sql, _params(model, where, values)
    query = model._default_manager.filter(**where).query.chain(UpdateQuery)
    query.add_update_values(values)
    sql, params = query.get_compiler(connection=connection).as_sql()
    params = tuple(params)
    if key is not None and _same(_params(model, where, values), params):
        _cache[(connection.vendor, key)] = sql
    return sql, params


def _shape(model: type[Model], where: dict[str, Any], values: dict[str, Any]) -> Hashable | None:
    parts: list[Hashable] = [model._meta.label]
    for group in (where, values):
        for name, value in group.items():
            if isinstance(value, KeepFirst):
                parts.append((name, "keep-first", type(value.value).__name__))
                continue
            if isinstance(value, Added):
                parts.append((name, "added", type(value.amount).__name__))
                continue
            if hasattr(value, "resolve_expression"):
                return None  # an expression: its SQL may depend on its value
            if isinstance(value, list | tuple | set | frozenset):
                parts.append((name, "seq", len(value)))
            else:
                parts.append((name, "none" if value is None else type(value).__name__))
        parts.append("|")
    return tuple(parts)


def _params(model: type[Model], where: dict[str, Any], values: dict[str, Any]) -> tuple[Any, ...]:
    out: list[Any] = []
    for name, value in values.items():
        if isinstance(value, KeepFirst):
            value = value.value  # COALESCE(col, %s)
        elif isinstance(value, Added):
            out.append(value.amount)  # col + %s, the amount as Value() passes it
            continue
        if value is not None:  # SET col = NULL has no parameter
            out.append(model._meta.get_field(name).get_db_prep_save(value, connection))
    # The ORM orders a filter's keyword arguments by name (``Q`` sorts them).
    for name, value in sorted(where.items()):
        field_name, _, lookup = name.partition("__")
        field = model._meta.get_field(field_name)
        if lookup == "in":
            out.extend(field.get_db_prep_value(v, connection, prepared=False) for v in value)
        elif lookup == "isnull" or value is None:
            continue  # IS [NOT] NULL
        elif (lookup or "exact") in _PARAM_LOOKUPS:
            out.append(field.get_db_prep_value(value, connection, prepared=False))
        else:
            out.append(object())  # unknown: never equal, so never cached
    return tuple(out)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        # psycopg's JSON wrappers compare by identity: compare what they wrap.
        if type(x) is not type(y):
            return False
        if hasattr(x, "obj") and hasattr(y, "obj"):
            if x.obj != y.obj:
                return False
        elif x != y:
            return False
    return True


def insert_row(obj: Model) -> None:
    """INSERT ``obj`` (a new row whose primary key is set) in one statement."""
    model = type(obj)
    fields = model._meta.local_concrete_fields
    key = (connection.vendor, "insert", model._meta.label)
    sql = _cache.get(key)
    if sql is not None:
        for f in fields:
            f.pre_save(obj, add=True)  # auto_now(_add) columns take their time
        params = _row_params(obj, fields)
    else:
        query = InsertQuery(model)
        query.insert_values(fields, [obj], raw=False)  # the compile applies pre_save
        [(sql, orm_params)] = query.get_compiler(connection=connection).as_sql()
        params = tuple(orm_params)
        if _same(_row_params(obj, fields), params):
            _cache[key] = sql
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    obj._state.adding = False
    obj._state.db = connection.alias


def _row_params(obj: Model, fields: Any) -> tuple[Any, ...]:
    return tuple(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields)
