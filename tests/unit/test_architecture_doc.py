"""docs/architecture.md's status table names exactly the transitions that exist."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from trigger_celery.engine import transitions

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _documented() -> list[str]:
    return re.findall(r"^\| `transitions\.([a-z_]+)` \|", DOC.read_text(), flags=re.MULTILINE)


def _defined() -> set[str]:
    return {
        name
        for name, fn in inspect.getmembers(transitions, inspect.isfunction)
        if fn.__module__ == transitions.__name__ and not name.startswith("_")
    }


def test_every_transition_is_in_the_architecture_table_and_nothing_else():
    documented = _documented()
    assert len(documented) == len(set(documented)), "a transition is listed twice"
    assert set(documented) == _defined()


def test_every_status_can_be_reached():
    from trigger_celery.core.statuses import RunStatus

    rows = re.findall(
        r"^\| `transitions\.[a-z_]+` \| [^|]+ \| ([A-Z_]+(?:, [A-Z_]+)*) \|",
        DOC.read_text(),
        flags=re.MULTILINE,
    )
    born = {RunStatus.PENDING_VERSION, RunStatus.DELAYED, RunStatus.QUEUED}
    reached = {RunStatus(s) for row in rows for s in row.split(", ")}
    assert set(RunStatus) == born | reached
