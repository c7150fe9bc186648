"""Queues with limits live where every process finds them at start (``<app>.tasks``):
a worker restoring a flushed store pushes the limits of the queues it knows."""

from trigger_celery import queue

limited = queue(name="dj-limited", concurrency_limit=1)
