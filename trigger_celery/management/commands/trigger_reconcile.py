from django.core.management.base import BaseCommand

from trigger_celery.engine import dispatch, recovery


class Command(BaseCommand):
    help = "Make the coordination store agree with the database (after a Redis flush or restart)."

    def handle(self, *args: object, **options: object) -> None:
        result = recovery.reconcile(full=True)
        sent = dispatch.dispatch_ready()
        self.stdout.write(
            f"re-enqueued {result['enqueued']} run(s), freed {result['freed']} slot(s), dispatched {sent}"
        )
