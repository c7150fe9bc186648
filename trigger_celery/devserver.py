"""``manage.py trigger_dev``: dashboard, worker and scheduler in one process.

For development on the embedded default (SQLite, no Redis): the web server and the
scheduler pump run in threads; a Celery worker with a thread pool runs in the main
thread and consumes what the pump and any other process (a Django shell) dispatch.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from celery import current_app
from django.apps import apps
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.servers.basehttp import WSGIServer, get_internal_wsgi_application, run
from django.db import close_old_connections

from trigger_celery.engine.pump import Pump

log = logging.getLogger("trigger_celery.dev")


def wsgi_application() -> Any:
    """The project's WSGI app, serving static files too when staticfiles is installed,
    as ``runserver`` does: the admin's and the dashboard's CSS and JavaScript load."""
    app = get_internal_wsgi_application()
    if apps.is_installed("django.contrib.staticfiles"):
        return StaticFilesHandler(app)
    return app


def parse_addrport(value: str) -> tuple[str, int, bool]:
    """``"8000"``, ``"0.0.0.0:8000"`` or ``"[::1]:8000"`` (as ``runserver`` takes them):
    address, port and whether the address is IPv6."""
    addr, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not a port or address:port")
    ipv6 = addr.startswith("[") and addr.endswith("]")
    return (addr[1:-1] if ipv6 else addr) or "127.0.0.1", int(port), ipv6


def check_bindable(addr: str, port: int, ipv6: bool) -> None:
    """Raise OSError now if the dashboard could not listen there, rather than leave the
    process running as a worker without the dashboard it announced."""
    with socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((addr, port))


def serve_http(addr: str, port: int, ipv6: bool = False) -> threading.Thread:
    def target() -> None:
        run(addr, port, wsgi_application(), ipv6=ipv6, threading=True, server_cls=WSGIServer)

    thread = threading.Thread(target=target, name="trigger-dev-http", daemon=True)
    thread.start()
    return thread


def pump_forever(stop: threading.Event) -> threading.Thread:
    def target() -> None:
        pump = Pump()
        while not stop.is_set():
            close_old_connections()
            stop.wait(pump.tick())

    thread = threading.Thread(target=target, name="trigger-dev-pump", daemon=True)
    thread.start()
    return thread


def run_worker(concurrency: int, loglevel: str) -> None:
    worker: Any = current_app.Worker(
        pool="threads",
        concurrency=concurrency,
        loglevel=loglevel,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
    )
    worker.start()
