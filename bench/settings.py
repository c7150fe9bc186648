"""Settings of the benchmark: PostgreSQL for run records, Redis for broker and store."""

import importlib.util
import os

SECRET_KEY = "bench-only"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_celery_beat",
    "trigger_celery",
    "bench.benchapp",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_PG_NAME", "trigger_celery_bench"),
        "USER": os.environ.get("BENCH_PG_USER", "postgres"),
        "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
        "CONN_MAX_AGE": None,
    }
}
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
TRIGGER_CELERY = {"REDIS_URL": REDIS_URL, "ENVIRONMENT": "PRODUCTION", "CONCURRENCY_LIMIT": 100_000}
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Keep database connections across tasks (Celery's Django fixup closes them after every
# task otherwise); recommended for every trigger_celery worker.
CELERY_DB_REUSE_MAX = 1000

# The third system of run_bench.py: Celery recording results the way Django teams do
# today (pip install 'trigger-celery[bench]').
if importlib.util.find_spec("django_celery_results"):
    INSTALLED_APPS.append("django_celery_results")
if os.environ.get("BENCH_RESULTS"):  # set for that system's worker only
    CELERY_RESULT_BACKEND = "django-db"
    CELERY_RESULT_EXTENDED = True
    CELERY_TASK_TRACK_STARTED = True
    CELERY_TASK_IGNORE_RESULT = False
