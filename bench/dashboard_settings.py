"""Settings of the dashboard benchmark: the bench's PostgreSQL plus the admin and the
dashboard; the coordination store in the database (no Redis needed)."""

import os

from bench.settings import *  # noqa: F403

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "trigger_celery",
    "bench.benchapp",
]
DATABASES["default"]["NAME"] = os.environ.get(  # noqa: F405
    "BENCH_DASHBOARD_PG_NAME", "trigger_celery_dashboard_bench"
)
TRIGGER_CELERY = {"ENVIRONMENT": "PRODUCTION", "CONCURRENCY_LIMIT": 100_000}
ROOT_URLCONF = "bench.dashboard_urls"
ALLOWED_HOSTS = ["*"]
STATIC_URL = "/static/"
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
