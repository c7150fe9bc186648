from django.core.management.base import BaseCommand

from trigger_celery.engine.schedules import sync_declarative


class Command(BaseCommand):
    help = (
        "Sync the schedules declared in code (schedules.task(cron=...)) to the database: "
        "create new ones, update changed ones, delete those no longer declared."
    )

    def handle(self, *args: object, **options: object) -> None:
        counts = sync_declarative()
        self.stdout.write(
            f"declarative schedules: {counts['created']} created, {counts['updated']} updated, "
            f"{counts['deleted']} deleted"
        )
