from django.core.management.base import BaseCommand

from trigger_celery.engine.schedules import sync_declarative


class Command(BaseCommand):
    help = (
        "Sync the schedules declared in code (schedules.task(cron=...)) to the database: "
        "create new ones, update changed ones, delete those no longer declared, also those "
        "of tasks this code no longer has (run it once a deploy is complete; a worker's "
        "own sync at start leaves those, as they may be another deployment's)."
    )

    def handle(self, *args: object, **options: object) -> None:
        counts = sync_declarative(prune=True)
        self.stdout.write(
            f"declarative schedules: {counts['created']} created, {counts['updated']} updated, "
            f"{counts['deleted']} deleted"
        )
