"""Django settings for the test suite.

``TC_TEST_DB=postgres`` runs on PostgreSQL (database ``test`` on 127.0.0.1, or
``TC_PG_*``); otherwise SQLite in a file, so worker subprocesses share it.
``TC_REDIS_URL`` points at the Redis the tests use (a private one by default).
"""

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent
RUN_DIR = Path(os.environ.get("TC_TEST_RUN_DIR", BASE_DIR.parent / ".test-run"))
RUN_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "trigger_celery",
    "tests.taskapp",
]
if django.VERSION >= (6, 0):
    # Django's own task API, run by trigger_celery's backend.
    INSTALLED_APPS += ["tests.djtaskapp"]
    TASKS = {
        "default": {
            "BACKEND": "trigger_celery.django_tasks.TriggerCeleryBackend",
            "QUEUES": ["default", "dj-limited"],
            "OPTIONS": {"PRIORITY_SECONDS": 1},
        },
        # A second alias of the same backend, for tasks sent with using(backend="bulk").
        "bulk": {
            "BACKEND": "trigger_celery.django_tasks.TriggerCeleryBackend",
            "QUEUES": ["default"],
        },
    }
# Apps only some worker processes install (TC_EXTRA_APPS=tests.lateapp).
INSTALLED_APPS += [a for a in os.environ.get("TC_EXTRA_APPS", "").split(",") if a]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "/static/"
MEDIA_ROOT = str(RUN_DIR / "media")

if os.environ.get("TC_TEST_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("TC_PG_NAME", "test"),
            "USER": os.environ.get("TC_PG_USER", "postgres"),
            "HOST": os.environ.get("TC_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TC_PG_PORT", "5432"),
            "TEST": {"NAME": os.environ.get("TC_PG_TEST_NAME", "test_trigger_celery")},
        }
    }
    if os.environ.get("TC_USE_TEST_DB"):
        # A worker process started by the tests: use the database the tests created.
        DATABASES["default"]["NAME"] = DATABASES["default"]["TEST"]["NAME"]
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(RUN_DIR / "db.sqlite3"),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": str(RUN_DIR / "test-db.sqlite3")},
        }
    }
    if os.environ.get("TC_USE_TEST_DB"):
        DATABASES["default"]["NAME"] = DATABASES["default"]["TEST"]["NAME"]

if os.environ.get("TC_SQLITE_DEFAULTS"):
    # A new Django project's SQLite, exactly as startproject writes it (no OPTIONS).
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["TC_SQLITE_DEFAULTS"],
        }
    }

REDIS_URL = os.environ.get("TC_REDIS_URL", "redis://127.0.0.1:6379/15")
TRIGGER_CELERY = {
    "REDIS_URL": REDIS_URL,
    "ENVIRONMENT": os.environ.get("TC_ENVIRONMENT", "PRODUCTION"),
    "PUMP_INTERVAL": 0.2,
    # Short leases so crash tests see a dead worker's runs come back within seconds.
    "LEASE_SECONDS": 4.0,
    "HEARTBEAT_SECONDS": 1.0,
    "CONCURRENCY_LIMIT": int(os.environ.get("TC_CONCURRENCY_LIMIT", "100")),
    "BURST_FACTOR": float(os.environ.get("TC_BURST_FACTOR", "1.0")),
    "HOOKS": {"on_success": ["tests.taskapp.trigger_init.settings_on_success"]},
    "OUTPUT_MAX_SIZE": int(os.environ.get("TC_OUTPUT_MAX_SIZE", str(100 * 1024 * 1024))),
}
if os.environ.get("TC_LOG_LINES_PER_RUN"):
    TRIGGER_CELERY["LOG_LINES_PER_RUN"] = int(os.environ["TC_LOG_LINES_PER_RUN"])
if os.environ.get("TC_SETTINGS_TYPO"):
    # A misspelt key, as an operator writes one (tests/integration/test_operator_mistakes.py).
    TRIGGER_CELERY[os.environ["TC_SETTINGS_TYPO"]] = 3
if os.environ.get("TC_METRICS"):
    # Processes of the metrics tests count run events (off elsewhere: a query each).
    TRIGGER_CELERY["METRICS"] = {"TOKEN": "metrics-token-for-tests-only"}
if os.environ.get("TC_METRICS_ALLOWED_IPS"):
    # A metrics setting the system checks refuse (tests/integration/test_metrics.py).
    TRIGGER_CELERY["METRICS"] = {"ALLOWED_IPS": os.environ["TC_METRICS_ALLOWED_IPS"].split(",")}
# The broker lives in another Redis database than the coordination store, so a test
# can flush the store alone (the "Redis lost our state" scenario).
CELERY_BROKER_URL = os.environ.get("TC_BROKER_URL", REDIS_URL.rsplit("/", 1)[0] + "/1")
if os.environ.get("TC_VISIBILITY_TIMEOUT"):
    # Redis redelivers a message not acked within this many seconds (default: an hour).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": float(os.environ["TC_VISIBILITY_TIMEOUT"])
    }
CELERY_DB_REUSE_MAX = 1000
if os.environ.get("TC_RESULT_BACKEND"):
    # A team's result backend (runs must not write to it).
    CELERY_RESULT_BACKEND = os.environ["TC_RESULT_BACKEND"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
if os.environ.get("TC_TASK_TIME_LIMIT"):
    CELERY_TASK_TIME_LIMIT = int(os.environ["TC_TASK_TIME_LIMIT"])
if os.environ.get("TC_DISABLE_PREFETCH"):
    # Set only when a test chooses; unset, a worker on Redis turns it on itself.
    CELERY_WORKER_DISABLE_PREFETCH = os.environ["TC_DISABLE_PREFETCH"] == "1"
CELERY_BEAT_SCHEDULER = "trigger_celery.beat:Scheduler"
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("TC_CELERY_QUEUE", "celery")
