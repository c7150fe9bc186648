from argparse import ArgumentParser
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.core.management.base import BaseCommand

from trigger_celery.metrics.exposition import CONTENT_TYPE_LATEST, render


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape is noise
        pass


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
        with make_server(addr, port, metrics_app, handler_class=_QuietHandler) as server:
            host, bound = server.server_address[:2]
            self.stdout.write(f"serving metrics on http://{host}:{bound}/metrics", ending="\n")
            self.stdout.flush()
            server.serve_forever()
