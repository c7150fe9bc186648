"""Transactions that read, then write: take the write lock first on SQLite.

SQLite lets one connection write at a time. A transaction that starts by reading and
then writes must upgrade its lock; when another connection is writing, that upgrade
fails at once with "database is locked" - no busy timeout helps. Django's default
SQLite settings begin every transaction that way (DEFERRED). :func:`write_transaction`
begins the package's own read-then-write transactions with ``BEGIN IMMEDIATE`` instead,
so they wait for the lock (up to the connection's timeout) rather than fail, whatever
the project's ``OPTIONS`` say. On PostgreSQL it is ``transaction.atomic()``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connections, transaction


@contextmanager
def write_transaction(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """``transaction.atomic()`` that holds SQLite's write lock from its first statement."""
    conn = connections[using]
    if conn.vendor != "sqlite" or conn.in_atomic_block:
        with transaction.atomic(using=using):
            yield
        return
    conn.ensure_connection()
    configured = conn.transaction_mode
    conn.transaction_mode = "IMMEDIATE"
    try:
        with transaction.atomic(using=using):
            conn.transaction_mode = configured  # only this BEGIN is ours to choose
            yield
    finally:
        conn.transaction_mode = configured


def heal_connections() -> None:
    """Drop this thread's database connections that broke (a restarted or unreachable
    server), so the next query connects again.

    Django does this at each request's start and end; the package's long-lived loops
    (pump, monitor, worker attempts) and triggers from outside a request call this
    instead. It costs nothing on a healthy connection: only one that saw an error since
    its last commit is probed, and never inside a transaction.
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or conn.in_atomic_block or not conn.errors_occurred:
            continue
        if conn.is_usable():
            conn.errors_occurred = False
        else:
            conn.close()


def lock_name(*parts: str, using: str = DEFAULT_DB_ALIAS) -> None:
    """Hold a lock on ``parts`` until the current transaction ends (PostgreSQL's
    transaction-level advisory lock), so look-up-then-write steps on one key from many
    processes run one after another. On SQLite :func:`write_transaction` already holds
    the database's write lock; elsewhere nothing is taken."""
    conn = connections[using]
    if not conn.in_atomic_block:
        raise RuntimeError("lock_name() holds its lock for a transaction; none is open")
    if conn.vendor != "postgresql":
        return
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest, "big", signed=True)]
        )
