from __future__ import annotations

from django.apps import AppConfig


class TriggerCeleryConfig(AppConfig):
    name = "trigger_celery"
    verbose_name = "Trigger Celery"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: these modules import the models, which Django
        # loads only after every app config (app loading forces the order).
        from trigger_celery import checks  # noqa: F401  (registers the system checks)
        from trigger_celery.metrics import recorder
        from trigger_celery.worker import (
            celery_task,  # noqa: F401  (execute_run on every app)
            signals,
        )

        signals.connect()
        recorder.connect()  # counts run events when TRIGGER_CELERY["METRICS"] is set
