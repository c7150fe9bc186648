"""The Celery app the integration tests' worker processes run (``-A tests.celery_app``)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

if os.environ.get("TC_OTEL_SPANS"):
    # Tracing per process: a prefork child sets up OpenTelemetry's SDK when it starts.
    from celery.signals import worker_process_init

    @worker_process_init.connect(weak=False)
    def _install_tracing(**kwargs):
        from tests import otel_spans

        otel_spans.install(os.environ["TC_OTEL_SPANS"])
