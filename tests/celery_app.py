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
        if os.environ.get("TC_OTEL_CELERY"):
            # Celery's own instrumentation on too: its spans beside ours.
            from opentelemetry.instrumentation.celery import CeleryInstrumentor

            CeleryInstrumentor().instrument()

    from celery.signals import beat_init

    @beat_init.connect(weak=False)
    def _install_tracing_in_beat(**kwargs):
        # Beat's pump finds crashed attempts and records the spans their processes lost.
        from tests import otel_spans

        otel_spans.install(os.environ["TC_OTEL_SPANS"])


if os.environ.get("TC_JSON_LOG"):
    # A JSON log handler, as a project with a JSON formatter would have.
    import json
    import logging

    from celery.signals import after_setup_logger

    class _JsonLines(logging.Handler):
        def emit(self, record):
            fields = {k: v for k, v in vars(record).items() if k.startswith("trigger_")}
            line = {"logger": record.name, "message": record.getMessage(), **fields}
            line["extra_run_id"] = getattr(record, "run_id", None)
            with open(os.environ["TC_JSON_LOG"], "a") as out:
                out.write(json.dumps(line, default=str) + "\n")

    @after_setup_logger.connect(weak=False)
    def _json_lines(logger, **kwargs):
        logger.addHandler(_JsonLines())
