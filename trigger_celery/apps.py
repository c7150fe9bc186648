from __future__ import annotations

from typing import Any

import django
from django.apps import AppConfig, apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from trigger_celery.core import run_events
from trigger_celery.default_broker import use_file_system_broker_if_unset


class TriggerCeleryConfig(AppConfig):
    name = "trigger_celery"
    verbose_name = "Trigger Celery"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if not apps.is_installed("django_celery_beat"):
            # Said before the checks import django-celery-beat's models, whose own error
            # ("doesn't declare an explicit app_label") would not say what to do.
            raise ImproperlyConfigured(
                "trigger_celery needs 'django_celery_beat' in INSTALLED_APPS: celery beat "
                "runs its schedules (add it next to 'trigger_celery')"
            )
        # Imported here, not at the top: these modules import the models, which Django
        # loads only after every app config (app loading forces the order).
        from trigger_celery import (
            checks,  # noqa: F401  (registers the system checks)
            startup_checks,
        )
        from trigger_celery.metrics import recorder
        from trigger_celery.worker import (
            celery_task,  # noqa: F401  (execute_run on every app)
            signals,
        )

        signals.connect()
        startup_checks.connect()  # a worker or beat says what keeps it from serving runs
        recorder.connect()  # counts run events when TRIGGER_CELERY["METRICS"] is set
        use_file_system_broker_if_unset()  # the embedded default needs no broker server
        if django.VERSION >= (6, 0) and _tasks_backend_configured():
            # Imported only here: it needs django.tasks (Django 6.0+) and the models.
            from trigger_celery import django_tasks

            # Django's task_finished, once a run's end commits in this process (the
            # backend subscribes too when it is built, which covers subclasses).
            run_events.subscribe(django_tasks.send_task_finished)
            django_tasks.name_configured_queues(_tasks_backend_configs())


def _tasks_backend_configs() -> list[dict[str, Any]]:
    """The entries of settings.TASKS that name trigger_celery's django.tasks backend."""
    tasks = getattr(settings, "TASKS", None) or {}
    return [
        config
        for config in tasks.values()
        if isinstance(config, dict) and str(config.get("BACKEND", "")).startswith("trigger_celery.")
    ]


def _tasks_backend_configured() -> bool:
    return bool(_tasks_backend_configs())
