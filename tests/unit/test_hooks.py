"""Hooks and async functions called from sync code (``core.hooks``)."""

from __future__ import annotations

import asyncio
import traceback

import pytest

from trigger_celery.core.hooks import call_hook, run_coroutine


class Refused(Exception):
    pass


async def _refuse() -> None:
    raise Refused("no")


def test_an_async_functions_error_carries_no_error_of_ours():
    """Its traceback is the function's alone: no "no running event loop" before it."""
    with pytest.raises(Refused) as info:
        run_coroutine(_refuse())
    assert info.value.__context__ is None
    assert "no running event loop" not in "".join(traceback.format_exception(info.value))


def test_async_hooks_run_to_the_end_also_inside_a_running_loop():
    async def hook(payload):
        await asyncio.sleep(0)
        return payload * 2

    assert call_hook(hook, payload=2, unused=1) == 4

    async def inside_a_loop():
        return call_hook(hook, payload=3)

    assert asyncio.run(inside_a_loop()) == 6
