"""A plain key given inside a run is scoped to the run, whatever it looks like."""

from __future__ import annotations

import hashlib

from tests.unit.contexts import a_context
from trigger_celery.core import context as run_context
from trigger_celery.core.options import parse_trigger_options
from trigger_celery.engine.idempotency import IdempotencyKey, resolve_key


def _in_run(run_id: str, value: object) -> str:
    token = run_context.enter(run_context.RunScope(a_context(run_id)))
    try:
        return resolve_key(parse_trigger_options({"idempotency_key": value}).idempotency_key)
    finally:
        run_context.leave(token)


def test_a_sha256_digest_given_inside_a_run_is_scoped_to_that_run():
    """A content hash is a common key. Before, any 64-hex string was taken as already
    hashed, so two runs shared one child where the README says each has its own."""
    digest = hashlib.sha256(b"order-42").hexdigest()
    assert _in_run("run_a", digest) != _in_run("run_b", digest)
    assert _in_run("run_a", digest) == _in_run("run_a", digest)  # a retry finds its child


def test_a_key_from_create_passes_the_options_as_made():
    made = IdempotencyKey("a" * 64)
    assert isinstance(parse_trigger_options({"idempotency_key": made}).idempotency_key, type(made))
    assert _in_run("run_a", made) == _in_run("run_b", made) == made


def test_outside_a_run_a_64_hex_key_is_taken_as_already_hashed():
    digest = hashlib.sha256(b"x").hexdigest()
    assert resolve_key(digest) == digest
