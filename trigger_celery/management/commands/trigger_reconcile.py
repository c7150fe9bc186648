from django.core.management.base import BaseCommand, CommandError

from trigger_celery.coordination.outages import STORE_OUTAGES
from trigger_celery.engine import dispatch, recovery


class Command(BaseCommand):
    help = "Make the coordination store agree with the database (after a Redis flush or restart)."

    def handle(self, *args: object, **options: object) -> None:
        try:
            result = recovery.reconcile(full=True)
            sent = dispatch.dispatch_ready()
        except STORE_OUTAGES as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CommandError(
                f"cannot reach the coordination store ({first_line}): start that Redis or "
                "correct TRIGGER_CELERY['REDIS_URL'], then run trigger_reconcile again"
            ) from exc
        self.stdout.write(
            f"re-enqueued {result['enqueued']} run(s), freed {result['freed']} slot(s), dispatched {sent}"
        )
