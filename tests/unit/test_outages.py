"""Telling an outage (try again) from a row's or a bug's error (say it, go on)."""

from __future__ import annotations

import redis
from django.db import DataError, OperationalError

from trigger_celery.coordination.outages import is_outage


class _Cause(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _django_error(sqlstate: str | None) -> OperationalError:
    err = OperationalError("...")
    err.__cause__ = _Cause(sqlstate)
    return err


def test_connection_and_server_states_are_outages():
    assert is_outage(redis.exceptions.ConnectionError("refused"))
    assert is_outage(OperationalError("database is locked"))  # SQLite's: no SQLSTATE
    for sqlstate in ("08006", "57P01", "53300", "40001"):
        assert is_outage(_django_error(sqlstate)), sqlstate


def test_a_program_limit_or_a_data_error_is_not_an_outage():
    # PostgreSQL's "total size of jsonb array elements exceeds the maximum" (54000)
    # comes as an OperationalError: the next pass would meet it again.
    assert not is_outage(_django_error("54000"))
    assert not is_outage(DataError("value too long"))
    assert not is_outage(ValueError("a bug"))
