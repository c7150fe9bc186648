"""The broker of the embedded default: Celery's file-system transport under ``BASE_DIR``.

SPEC 1: on the embedded default (no ``REDIS_URL``) nothing needs installing. A project
that sets no broker at all (no ``CELERY_BROKER_URL``, no ``broker_url`` on its Celery
app, no ``CELERY_BROKER_URL`` in the environment) would otherwise send its runs to
Celery's default, an AMQP server on localhost. Instead every process of the project
(``trigger_dev``, ``manage.py shell``, ``runserver``) shares a file-system broker in
``BASE_DIR/.trigger_celery/broker``: one machine, no server. A broker set anywhere is
left alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

from celery import current_app
from django.conf import settings

from trigger_celery.conf import get_settings

log = logging.getLogger("trigger_celery")

FOLDER = Path(".trigger_celery") / "broker"


def use_file_system_broker_if_unset() -> Path | None:
    """Point the current Celery app at the file-system broker when nothing else is set;
    returns its folder, or None when a broker is set (or no store or BASE_DIR says)."""
    try:
        embedded = get_settings().store_kind == "database"
    except Exception:  # unreadable settings: the system checks report them
        return None
    base = getattr(settings, "BASE_DIR", None)
    if not embedded or not base or current_app.conf.broker_url:
        return None
    folder = Path(base) / FOLDER
    (folder / "processed").mkdir(parents=True, exist_ok=True)
    current_app.conf.broker_url = "filesystem://"
    current_app.conf.broker_transport_options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
        "control_folder": str(folder / "control"),
    }
    log.debug("no Celery broker set: using the file-system broker in %s", folder)
    return folder
