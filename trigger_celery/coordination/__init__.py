"""Coordination stores: the interface and its Redis and database implementations."""

from trigger_celery.coordination.base import (
    Claim,
    CoordinationStore,
    Entry,
    EnvironmentLimits,
    QueueConfig,
    QueueStats,
    StoreNotConfiguredError,
)

__all__ = [
    "Claim",
    "CoordinationStore",
    "Entry",
    "EnvironmentLimits",
    "QueueConfig",
    "QueueStats",
    "StoreNotConfiguredError",
]
