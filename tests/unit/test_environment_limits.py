"""Processes of one environment that disagree on its limits are told so."""

from __future__ import annotations

import logging

from trigger_celery.coordination import EnvironmentLimits
from trigger_celery.engine.queueing import warn_of_other_limits


def test_other_limits_in_the_store_are_named_in_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="trigger_celery.queueing"):
        assert warn_of_other_limits(EnvironmentLimits(50, 2.0), EnvironmentLimits(100, 1.0))
    [record] = caplog.records
    assert "CONCURRENCY_LIMIT=50" in record.getMessage()
    assert "BURST_FACTOR=2.0" in record.getMessage()
    assert "make them 100 and 1.0" in record.getMessage()


def test_the_same_limits_or_a_store_without_them_warn_of_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="trigger_celery.queueing"):
        assert not warn_of_other_limits(EnvironmentLimits(100, 1.0), EnvironmentLimits(100, 1.0))
        assert not warn_of_other_limits(None, EnvironmentLimits(100, 1.0))
    assert caplog.records == []
