import threading

from django.core.management.base import BaseCommand, CommandError

from trigger_celery import devserver

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Command(BaseCommand):
    help = "Run the dashboard, a worker and the scheduler in one process (development)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--concurrency", type=int, default=4)
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args: object, **options: object) -> None:
        # Refused before anything starts (they were a traceback once the dashboard was up).
        concurrency = options["concurrency"]
        if not isinstance(concurrency, int) or concurrency < 1:
            raise CommandError(f"--concurrency {concurrency}: use a whole number of 1 or more")
        level = str(options["loglevel"]).upper()
        if level not in LOG_LEVELS:
            raise CommandError(
                f"--loglevel {options['loglevel']!r}: use one of {', '.join(LOG_LEVELS)}"
            )
        try:
            addr, port, ipv6 = devserver.parse_addrport(str(options["addrport"]))
            devserver.check_bindable(addr, port, ipv6)
        except ValueError as err:
            raise CommandError(str(err)) from None
        except OSError as err:
            raise CommandError(f"cannot serve the dashboard on {addr}:{port}: {err.strerror}")
        stop = threading.Event()
        devserver.serve_http(addr, port, ipv6)
        devserver.pump_forever(stop)
        shown = f"[{addr}]" if ipv6 else addr
        self.stdout.write(f"trigger_celery dev: dashboard on http://{shown}:{port}/trigger/")
        try:
            devserver.run_worker(concurrency, level)
        finally:
            stop.set()
