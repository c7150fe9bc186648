"""Prometheus metrics: counters kept in Redis by every process, read by ``/metrics``.

:mod:`.recorder` counts what the engine publishes (no prometheus_client needed there);
:mod:`.exposition` turns the counters and the store's live queue counts into the
Prometheus text format, for the view and the ``trigger_metrics`` exporter.
"""
