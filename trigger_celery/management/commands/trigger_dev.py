import threading

from django.core.management.base import BaseCommand

from trigger_celery import devserver


class Command(BaseCommand):
    help = "Run the dashboard, a worker and the scheduler in one process (development)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--concurrency", type=int, default=4)
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args: object, **options: object) -> None:
        addr, _, port = str(options["addrport"]).rpartition(":")
        stop = threading.Event()
        devserver.serve_http(addr or "127.0.0.1", int(port))
        devserver.pump_forever(stop)
        self.stdout.write(
            f"trigger_celery dev: dashboard on http://{addr or '127.0.0.1'}:{port}/trigger/"
        )
        try:
            devserver.run_worker(int(options["concurrency"]), str(options["loglevel"]))  # type: ignore[arg-type]
        finally:
            stop.set()
