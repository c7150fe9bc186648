"""A formatter string naming the run fields works on records made outside a run."""

from __future__ import annotations

import io
import logging

from trigger_celery.worker import log_fields
from trigger_celery.worker.log_fields import RunFields


def _logger(stream: io.StringIO) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.addFilter(RunFields())
    handler.setFormatter(
        logging.Formatter("%(trigger_run_id)s %(trigger_task_id)s %(trigger_attempt)s %(message)s")
    )
    logger = logging.getLogger("tests.log_fields_filter")
    logger.handlers[:] = [handler]
    logger.propagate = False
    return logger


def test_a_record_outside_a_run_formats_with_none():
    log_fields.install()
    stream = io.StringIO()
    _logger(stream).warning("outside")
    assert stream.getvalue() == "None None None outside\n"


def test_extra_fields_given_outside_a_run_are_kept():
    stream = io.StringIO()
    _logger(stream).warning("about a run", extra=log_fields.of("run_1", "t", 2))
    assert stream.getvalue() == "run_1 t 2 about a run\n"
