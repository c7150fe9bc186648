"""The rule for a queue's name, applied wherever a name comes in: ``queue(name=...)``, a
task's id (it names the task's own queue), the trigger option ``queue=`` and the
``django.tasks`` backend's queue names, so each refuses a bad name with one message."""

from __future__ import annotations

_DOT_SEGMENTS = frozenset({".", ".."})


def control_character_problem(name: str) -> str | None:
    """Why ``name`` cannot name a queue, or None: a control character. The store joins a
    queue's name and a concurrency key with one (``\\x1f``) and splits at the first, so
    a queue named with it would count as another queue, its limits never applied."""
    for char in name:
        if char < " " or char == "\x7f":
            return f"contains a control character ({char!r}); use printable characters"
    return None


def dot_segment_problem(name: str) -> str | None:
    """Why ``name`` cannot name a queue, or None: a ``.`` or ``..`` path segment. The
    dashboard puts the name in its action URLs, and a browser resolves such segments
    (``a/../b`` becomes ``b``), so a pause or a limit would reach another queue."""
    if any(segment in _DOT_SEGMENTS for segment in name.split("/")):
        return (
            "has a '.' or '..' path segment, which a browser resolves in the dashboard's "
            "URLs to another queue; name it without one"
        )
    return None


def queue_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a queue's name, or None."""
    return control_character_problem(name) or dot_segment_problem(name)
