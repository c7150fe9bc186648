from __future__ import annotations

from django.apps import AppConfig


class TriggerCeleryConfig(AppConfig):
    name = "trigger_celery"
    verbose_name = "Trigger Celery"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from trigger_celery import checks  # noqa: F401  (registers system checks)
        from trigger_celery.runtime import celery_task, worker_signals  # noqa: F401

        # celery_task registers ``trigger_celery.execute_run`` with every Celery app.

        worker_signals.connect()
