"""Payloads and outputs: inline up to a size, through Django's storage API above it.

Large values go to the ``STORAGES`` alias named by ``TRIGGER_CELERY["STORAGE"]``
(``"default"`` unless set), under ``STORAGE_PREFIX/<run id>/``.

Never relative to a process's working directory (SPEC 1): a file system storage whose
location is relative (``MEDIA_ROOT`` unset, as ``startproject`` leaves it) is anchored at
``settings.BASE_DIR``, which ``startproject`` defines, so the web process and the workers
find the same files wherever they were started. Without a ``BASE_DIR`` that is absolute,
a large value is refused with an error naming the setting to fix (system check E017).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from typing import Any

from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages

from trigger_celery.conf import get_settings
from trigger_celery.core.serialization import encode
from trigger_celery.errors import ConfigurationError, PayloadTooLargeError

log = logging.getLogger("trigger_celery.payloads")


def store_payload(run_id: str, kind: str, value: Any, *, limit: int) -> tuple[Any, str]:
    """Return ``(inline_value, storage_ref)``: one of the two is empty.

    ``value`` must already be JSON-able. Above ``limit`` bytes: ``PayloadTooLargeError``;
    a string the database cannot store (a NUL character, a lone surrogate):
    ``SerializationError``, before anything is written.
    """
    inline, ref, _ = store_payload_json(run_id, kind, value, limit=limit)
    return inline, ref


def store_payload_json(
    run_id: str, kind: str, value: Any, *, limit: int
) -> tuple[Any, str, str | None]:
    """:func:`store_payload`, with the JSON text of the inline value as well (None when
    the value went to storage): a batch writes that text as it is instead of encoding
    every payload twice."""
    settings = get_settings()
    encoded = encode(value, what=kind)
    if len(encoded) > limit:
        # A payload is refused before its run exists: no run id to name then.
        whose = "the payload" if kind == "payload" else f"the {kind} of run {run_id}"
        raise PayloadTooLargeError(
            f"{whose} is {len(encoded):,} bytes; the limit is {limit:,} bytes"
        )
    if len(encoded) <= settings.PAYLOAD_INLINE_LIMIT:
        return value, "", encoded.decode()
    name = _storage().save(f"{settings.STORAGE_PREFIX}/{run_id}/{kind}.json", ContentFile(encoded))
    return None, name, None


def load_payload(inline: Any, ref: str) -> Any:
    """The value stored by :func:`store_payload`."""
    if not ref:
        return inline
    with _storage().open(_checked(ref), "rb") as fh:
        return json.loads(fh.read())


def read_stored_head(ref: str, limit: int) -> tuple[bytes, bool]:
    """The first ``limit`` bytes of a value in storage, and whether it holds more: a page
    that shows a value need not read 100 MB of it to show its start."""
    with _storage().open(_checked(ref), "rb") as fh:
        head = fh.read(limit + 1)
    return head[:limit], len(head) > limit


def discard_payload(ref: str) -> None:
    """Delete a stored value nobody refers to (the trigger lost an idempotency or
    debounce race); a failure only leaves a stray file."""
    if ref:
        try:
            _storage().delete(_checked(ref))
        except Exception:
            log.warning("could not delete the unused stored payload %s", ref, exc_info=True)


# What store_payload names a file: <prefix>/<run id>/<kind>.json, the storage's suffix
# before ".json" when the name was taken. Not tied to today's STORAGE_PREFIX, so values
# stored under an earlier one stay readable.
_STORED_NAME = re.compile(r"[A-Za-z0-9_-]+/(payload|output)(_[A-Za-z0-9]+)?\.json")


def _checked(ref: str) -> str:
    """``ref`` when it is a name :func:`store_payload` could have given; else a
    ValueError naming it. A run row is data: one written to name another file of the
    storage (``settings.py`` beside a relative storage's anchor, ``..`` in it) must not
    have it shown on a page, read by a worker or deleted."""
    normal = posixpath.normpath(ref)
    if (
        normal != ref
        or ref.startswith("/")
        or ".." in ref.split("/")
        or not _STORED_NAME.fullmatch("/".join(ref.split("/")[-2:]))
    ):
        raise ValueError(
            f"stored value {ref!r} is not a name this package gives one "
            "(<STORAGE_PREFIX>/<run id>/payload.json or output.json)"
        )
    return ref


def _storage() -> Storage:
    alias = get_settings().STORAGE
    storage = storages[alias]
    if not isinstance(storage, FileSystemStorage) or os.path.isabs(str(storage.base_location)):
        return storage
    anchor = storage_anchor()
    if anchor is None:
        raise ConfigurationError(
            f"the {alias!r} storage keeps large payloads and outputs under "
            f"{storage.base_location!r}, relative to each process's working directory; set "
            "MEDIA_ROOT (or the storage's OPTIONS['location']) to an absolute path"
        )
    return FileSystemStorage(
        location=os.path.join(anchor, str(storage.base_location)),
        file_permissions_mode=storage.file_permissions_mode,
        directory_permissions_mode=storage.directory_permissions_mode,
    )


def storage_anchor() -> str | None:
    """Where a relative file system storage is anchored: ``BASE_DIR`` when absolute."""
    base_dir = getattr(django_settings, "BASE_DIR", None)
    return str(base_dir) if base_dir and os.path.isabs(str(base_dir)) else None
