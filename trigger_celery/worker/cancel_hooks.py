"""``on_cancel`` hooks: run by the attempt monitor when it sees a cancel, or by a settle
whose final write lost to one, in a scope of their own."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from trigger_celery.core import context as run_context
from trigger_celery.core.context import Context
from trigger_celery.core.hooks import call_hook
from trigger_celery.engine.registry import TaskDefinition
from trigger_celery.worker.user_code import hooks_of

log = logging.getLogger("trigger_celery.worker")

_ON_CANCEL = "on_cancel (the run is being canceled; what it triggers runs on its own)"


def call_cancel_hooks(
    definition: TaskDefinition,
    ctx: Context,
    run_finished: Any = None,
    *,
    payload: Any = None,
    parsed: bool = False,
) -> None:
    """on_cancel hooks (global, then the task's); errors are logged. Called by the monitor
    with the payload as stored, parsed here for a schema task as every hook gets it (a
    settle passes the one its hooks got: ``parsed``)."""
    hooks = hooks_of(definition, "on_cancel")
    if hooks and not parsed:
        try:
            payload = definition.parse_payload_in_worker(payload)
        except (Exception, asyncio.CancelledError):  # an async hook's own cancel too
            pass  # the attempt itself failed on it: the hooks get it as stored
    if not hooks:
        return
    # A scope of their own: what they trigger is not a child of the run being canceled
    # (it would be canceled with it), and waits are refused (nothing could resume them).
    scope = run_context.optional_scope()
    token = None
    if scope is not None:
        own = dataclasses.replace(scope, waits_closed=_ON_CANCEL, detached=True)
        token = run_context.enter(own)
    try:
        for fn in hooks:
            try:
                call_hook(
                    fn,
                    payload=payload,
                    ctx=ctx,
                    signal=ctx.signal,
                    task=definition.id,
                    init=ctx.init,
                    run_finished=run_finished,
                )
            except Exception:
                log.exception("on_cancel hook of run %s failed", ctx.run.id)
    finally:
        if token is not None:
            run_context.leave(token)
