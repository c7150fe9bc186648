"""Payloads and outputs: inline up to a size, through Django's storage API above it.

Large values go to the ``STORAGES`` alias named by ``TRIGGER_CELERY["STORAGE"]``
(``"default"`` unless set), under ``STORAGE_PREFIX/<run id>/``. The default prefix,
``trigger-celery-payloads``, has a hyphen, so it can never be taken for a Python package
when the storage writes relative to a process's working directory (system check W005
warns about such a storage).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

from trigger_celery.conf import get_settings
from trigger_celery.errors import PayloadTooLargeError

log = logging.getLogger("trigger_celery.payloads")


def store_payload(run_id: str, kind: str, value: Any, *, limit: int) -> tuple[Any, str]:
    """Return ``(inline_value, storage_ref)``: one of the two is empty.

    ``value`` must already be JSON-able. Above ``limit`` bytes: ``PayloadTooLargeError``.
    """
    settings = get_settings()
    encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    if len(encoded) > limit:
        raise PayloadTooLargeError(
            f"{kind} of run {run_id} is {len(encoded):,} bytes; the limit is {limit:,} bytes"
        )
    if len(encoded) <= settings.PAYLOAD_INLINE_LIMIT:
        return value, ""
    name = _storage().save(f"{settings.STORAGE_PREFIX}/{run_id}/{kind}.json", ContentFile(encoded))
    return None, name


def load_payload(inline: Any, ref: str) -> Any:
    """The value stored by :func:`store_payload`."""
    if not ref:
        return inline
    with _storage().open(ref, "rb") as fh:
        return json.loads(fh.read())


def discard_payload(ref: str) -> None:
    """Delete a stored value nobody refers to (the trigger lost an idempotency or
    debounce race); a failure only leaves a stray file."""
    if ref:
        try:
            _storage().delete(ref)
        except Exception:
            log.warning("could not delete the unused stored payload %s", ref, exc_info=True)


def _storage() -> Storage:
    return storages[get_settings().STORAGE]
