"""``logger``: structured log lines stored with the run and sent to Python logging."""

from __future__ import annotations

import json
import logging
from typing import Any

from trigger_celery.conf import get_settings
from trigger_celery.core.context import optional_scope
from trigger_celery.core.serialization import encode, escape_json, escape_text, to_jsonable
from trigger_celery.errors import SerializationError
from trigger_celery.models import LogEntry
from trigger_celery.off_loop import off_event_loop

_py_logger = logging.getLogger("trigger_celery.run")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


# Characters kept of a line's message, and of its attributes as JSON.
TEXT_LIMIT = 10_000


def _stored(attributes: dict[str, Any]) -> dict[str, Any]:
    """A line's attributes as stored: a value JSON cannot hold is kept as its repr (a log
    call never fails the run), and attributes longer than TEXT_LIMIT are cut."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        try:
            out[str(key)] = to_jsonable(value, what="log attribute")
        except (TypeError, ValueError, RecursionError):
            out[str(key)] = _shown(str(key), value)
    try:
        text = encode(out, what="log attribute").decode()
    except SerializationError:  # a NUL character or a lone surrogate: kept as escapes
        out = escape_json(out)
        text = json.dumps(out, ensure_ascii=False)
    if len(text) > TEXT_LIMIT:
        return {"truncated": text[:TEXT_LIMIT]}
    return out


def _shown(key: str, value: Any) -> str:
    """``value``'s repr, cut to TEXT_LIMIT; a note naming the attribute when even that
    fails (a value nested too deep for repr, a ``__repr__`` that raises)."""
    try:
        return repr(value)[:TEXT_LIMIT]
    except Exception as exc:  # RecursionError included
        return f"<log attribute {key!r}: {type(value).__name__} not shown ({type(exc).__name__})>"


class RunLogger:
    """``logger.info("charged", amount=10)`` inside a run.

    Outside a run the line only goes to Python logging.
    """

    @off_event_loop  # its row is written from an async run function too
    def _log(self, level: str, message: str, attributes: dict[str, Any]) -> None:
        scope = optional_scope()
        run_id = scope.ctx.run.id if scope else None
        extra_attrs = attributes.pop("extra", None)
        if isinstance(extra_attrs, dict):
            attributes = {**extra_attrs, **attributes}
        _py_logger.log(_LEVELS[level], "[%s] %s %s", run_id or "-", message, attributes or "")
        if scope is None:
            return
        if -1 not in scope.locals:
            # The bound is per run: earlier attempts and replays count too.
            scope.locals[-1] = LogEntry.objects.filter(run_id=run_id).count()
        written, limit = scope.locals[-1], get_settings().LOG_LINES_PER_RUN
        if written > limit:
            return
        scope.locals[-1] = written + 1
        if written == limit:
            if limit:
                level, attributes = "warn", {}
                message = f"{limit} log lines stored (LOG_LINES_PER_RUN); later ones go to Python logging only"
            else:
                return
        LogEntry.objects.create(
            run_id=run_id,
            attempt_number=scope.ctx.attempt.number,
            level=level.upper(),
            message=escape_text(str(message))[:TEXT_LIMIT],
            attributes=_stored(attributes) if attributes else {},
        )

    def debug(self, message: str, /, **attributes: Any) -> None:
        self._log("debug", message, attributes)

    def info(self, message: str, /, **attributes: Any) -> None:
        self._log("info", message, attributes)

    def log(self, message: str, /, **attributes: Any) -> None:
        self._log("info", message, attributes)

    def warn(self, message: str, /, **attributes: Any) -> None:
        self._log("warn", message, attributes)

    warning = warn

    def error(self, message: str, /, **attributes: Any) -> None:
        self._log("error", message, attributes)


logger = RunLogger()
