"""Shared fixtures: the Celery app is loaded so triggers in tests can publish, and the
fixtures of real services (``tests/integration/fixtures.py``) are registered once for
every directory that uses them (integration, chaos)."""

import tests.celery_app  # noqa: F401  (makes the tests' Celery app the current one)
from tests.integration.fixtures import *  # noqa: F403  (the fixtures, registered here once)
