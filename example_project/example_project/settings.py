"""Settings of the example project.

With no environment variables it is the embedded default: SQLite and no external
service (the coordination store lives in the database, Celery's broker in files).
Set ``REDIS_URL`` (and ``DATABASE_URL=postgres://...``-style ``PG*`` variables below)
for the production shape: Redis for coordination and as Celery's broker, PostgreSQL.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("TRIGGER_DEMO_DATA", BASE_DIR / ".trigger_dev"))
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "example_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"
MEDIA_ROOT = str(DATA_DIR / "media")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "trigger_celery",
    "demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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

if os.environ.get("PGDATABASE"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["PGDATABASE"],
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "db.sqlite3"),
            "OPTIONS": {
                # One writer at a time, taken at BEGIN (no upgrade deadlocks), WAL so
                # readers never block, and fsync at checkpoints only: ~15x more run
                # updates per second than SQLite's defaults.
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

REDIS_URL = os.environ.get("REDIS_URL")
TRIGGER_CELERY = {
    "ENVIRONMENT": os.environ.get("TRIGGER_ENVIRONMENT", "DEVELOPMENT"),
    "CONCURRENCY_LIMIT": 10,
}
if REDIS_URL:
    TRIGGER_CELERY["REDIS_URL"] = REDIS_URL
    CELERY_BROKER_URL = REDIS_URL
else:
    # Celery's file-system transport: several processes on one machine, no server.
    _broker = DATA_DIR / "broker"
    (_broker / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker),
        "data_folder_out": str(_broker),
        "processed_folder": str(_broker / "processed"),
        "store_processed": False,
        # Broadcast (control) files too, instead of ./control beside the working directory.
        "control_folder": str(_broker / "control"),
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULER = "trigger_celery.beat:Scheduler"
CELERY_DB_REUSE_MAX = 1000  # keep DB connections across tasks
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # a busy worker reserves no run it cannot start

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"trigger_celery": {"handlers": ["console"], "level": "INFO"}},
}
