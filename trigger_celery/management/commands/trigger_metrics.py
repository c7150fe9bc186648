import socket
from argparse import ArgumentParser
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.core.management.base import BaseCommand, CommandError

from trigger_celery.metrics.exposition import CONTENT_TYPE_LATEST, render


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape is noise
        pass


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per scrape, so a slow client does not hold the next one up."""

    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6  # "--addr ::" or "::1"


def metrics_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found; metrics are at /metrics\n"]
    body = render()
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
    return [body]


class Command(BaseCommand):
    help = (
        "Serve Prometheus metrics on their own port (no token: bind it where only "
        "Prometheus can reach it). The web app's /metrics view is the alternative."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--addr", default="127.0.0.1", help="address to bind")
        parser.add_argument("--port", type=int, default=9808, help="port (default 9808)")

    def handle(self, *args: Any, addr: str, port: int, **options: Any) -> None:
        if not 0 <= port <= 65535:
            raise CommandError(f"--port {port} is not a port: use a number from 0 to 65535")
        try:
            server = make_server(
                addr,
                port,
                metrics_app,
                server_class=_Server6 if ":" in addr else _Server,
                handler_class=_QuietHandler,
            )
        except OSError as exc:  # an unknown address, a port in use or not ours to bind
            raise CommandError(f"cannot serve metrics on {addr}:{port}: {exc}") from exc
        with server:
            host, bound = server.server_address[:2]
            shown = f"[{host}]" if ":" in str(host) else host
            self.stdout.write(f"serving metrics on http://{shown}:{bound}/metrics", ending="\n")
            self.stdout.flush()
            server.serve_forever()
