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
import os
import uuid
from functools import cached_property
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from celery import current_app
from django.conf import settings
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

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
        wait_in_short_slices()
        return None
    folder = Path(base) / FOLDER
    (folder / "processed").mkdir(parents=True, exist_ok=True)
    current_app.conf.broker_url = "filesystem://"
    wait_in_short_slices()
    current_app.conf.broker_transport_options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
        "control_folder": str(folder / "control"),
    }
    log.debug("no Celery broker set: using the file-system broker in %s", folder)
    return folder


def wait_in_short_slices() -> None:
    """A project on Celery's file-system transport (ours or its own ``filesystem://``)
    gets :class:`EmbeddedTransport`, unless it names a transport class itself."""
    conf = current_app.conf
    url = conf.broker_url
    if isinstance(url, str) and url.startswith("filesystem:") and not conf.broker_transport:
        conf.broker_transport = f"{__name__}:EmbeddedTransport"


# The longest a worker's wait for a message lasts (seconds); also how often an idle
# worker looks in the folder.
DRAIN_SECONDS = 0.05


class EmbeddedChannel(filesystem.Channel):
    """Celery's file-system channel, with messages that are whole when seen and taken
    by one consumer. Kombu's opens a message's file under its final name and then writes
    it, so a worker could read it empty (``JSONDecodeError``, an unrecoverable error that
    ended the worker); and it moves a taken message to the system's temporary folder,
    a copy when that is another file system, which two workers could both make."""

    @cached_property
    def taken_folder(self) -> str:
        """Where a consumer moves the message it takes: inside the folder, so the move is
        one atomic rename that only one consumer wins."""
        folder = os.path.join(self.data_folder_in, ".taken")
        os.makedirs(folder, exist_ok=True)
        return folder

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        try:
            with open(final + ".part", "wb") as out:  # not a message's name: not read
                out.write(str_to_bytes(dumps(payload)))
            os.replace(final + ".part", final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: str) -> Any:
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            taken = os.path.join(self.taken_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), taken)  # one taker wins
            except OSError:
                continue  # another worker took it
            try:
                with open(taken, "rb") as message:
                    payload = message.read()
                os.remove(taken)
            except OSError as exc:
                raise ChannelError(f"Cannot read file {taken!r} from queue.") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


class EmbeddedTransport(filesystem.Transport):
    """Celery's file-system transport, waited on in short slices (and its messages
    written and taken whole: :class:`EmbeddedChannel`).

    The transport cannot wake a worker, so Celery runs its blocking loop: acknowledge
    what finished, then wait up to 2 s for one message. With the prefetch multiplier of
    1, a worker whose processes all hold a message waits those 2 s out before it hears
    that they finished, so it took ``-c`` messages every 2 s however short the runs were
    (a burst of 300 no-op runs drained at 5 runs/s, and the messages that waited past
    their lease were sent again). A wait is cut to :data:`DRAIN_SECONDS`: the loop comes
    back to its acknowledgements at once.
    """

    Channel = EmbeddedChannel
    polling_interval = DRAIN_SECONDS

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # A folder has no host: with none here, kombu does not warn in every process
        # that it is "reverting to default 'localhost'".
        return {"port": self.default_port}

    def drain_events(self, connection: object, timeout: float | None = None) -> object:
        if timeout is not None and timeout > DRAIN_SECONDS:
            timeout = DRAIN_SECONDS
        return super().drain_events(connection, timeout=timeout)
