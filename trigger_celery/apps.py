from __future__ import annotations

import django
from django.apps import AppConfig
from django.conf import settings

from trigger_celery.core import run_events


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
        if django.VERSION >= (6, 0) and _tasks_backend_configured():
            # Imported only here: it needs django.tasks (Django 6.0+) and the models.
            from trigger_celery import django_tasks

            # Django's task_finished for runs canceled, expired or crashed in this process
            # (the backend subscribes too when it is built, which covers subclasses).
            run_events.subscribe(django_tasks.finished_outside_the_task)


def _tasks_backend_configured() -> bool:
    """Whether settings.TASKS names trigger_celery's django.tasks backend."""
    tasks = getattr(settings, "TASKS", None) or {}
    return any(
        isinstance(config, dict) and str(config.get("BACKEND", "")).startswith("trigger_celery.")
        for config in tasks.values()
    )
