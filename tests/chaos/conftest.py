"""Chaos tests use the integration fixtures: real Redis, database, workers and beats."""

from tests.integration.conftest import *  # noqa: F403  (the same fixtures)
