"""What a waiting parent gets back: ``RunResult`` and ``BatchResult`` (SPEC 7)."""

from __future__ import annotations

import pytest

from trigger_celery.core.results import BatchResult, RunResult
from trigger_celery.errors import SubtaskUnwrapError


def test_a_batch_result_iterates_counts_and_indexes_its_runs_in_item_order():
    first = RunResult(True, "run_1", "echo", output={"i": 0})
    second = RunResult(False, "run_2", "echo", error={"message": "no"})
    result = BatchResult("batch_1", [first, second])

    assert list(result) == [first, second]
    assert len(result) == 2
    assert result[0] is first and result[-1] is second
    assert [r.ok for r in result] == [True, False]
    with pytest.raises(SubtaskUnwrapError):
        result[1].unwrap()


def test_an_empty_batch_result_is_empty():
    assert list(BatchResult("batch_1", [])) == [] and len(BatchResult("batch_1", [])) == 0
