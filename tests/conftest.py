"""Shared fixtures: the Celery app is loaded so triggers in tests can publish."""

import tests.celery_app  # noqa: F401  (makes the tests' Celery app the current one)
