"""A run's payload or output as a page shows it: whole when it is small, else its start.

An inline value (at most ``PAYLOAD_INLINE_LIMIT``) is shown whole. A value in storage
can be up to 10 MB (a payload) or 100 MB (an output): a page shows its first
:data:`SHOWN_BYTES` and says how it was cut, and a value storage cannot give back (a
file deleted, a storage the web process does not share with the workers) is named as
such instead of failing the whole page.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from trigger_celery.engine.payloads import read_stored_head

log = logging.getLogger("trigger_celery.dashboard")

SHOWN_BYTES = 512 * 1024


def pretty(value: object) -> str:
    """``value`` as JSON text to read and edit: indented, unless that passes
    :data:`SHOWN_BYTES`, then on one line. Indenting a deeply nested value multiplies
    it: a 420 KB payload became 2.7 MB of page, and the replay box or test page filled
    with it sent back more than Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (a bare 400)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) <= SHOWN_BYTES:
        return text
    return json.dumps(value, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class Shown:
    text: str
    note: str = ""  # how the text falls short of the value ("" when it is the value)
    value: Any = None  # the value itself, when it was read whole

    @property
    def whole(self) -> bool:
        return not self.note


def shown_value(inline: Any, ref: str, what: str) -> Shown:
    """``what`` ("payload", "output") of a run, as its page shows it."""
    if not ref:
        return Shown(pretty(inline), value=inline)
    try:
        head, more = read_stored_head(ref, SHOWN_BYTES)
    except Exception as exc:  # the page still shows the run, and says what went wrong
        log.warning("could not read the stored %s %s", what, ref, exc_info=True)
        return Shown(
            "", f"The {what} stored at {ref} could not be read: {type(exc).__name__}: {exc}"
        )
    cut = head.decode("utf-8", "ignore")  # a character cut in two at the end is dropped
    if not more:
        try:
            value = json.loads(head)
        except ValueError as exc:  # damaged, or cut short by something else
            return Shown(cut, f"The {what} stored at {ref} is not valid JSON ({exc}).")
        return Shown(pretty(value), value=value)
    return Shown(
        cut,
        f"The {what} is larger than {SHOWN_BYTES // 1024} KB; its first "
        f"{SHOWN_BYTES // 1024} KB are shown as stored (at {ref}).",
    )
