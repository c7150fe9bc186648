"""The global hooks and middleware ``TRIGGER_CELERY`` names by dotted path (SPEC 3).

``manage.py check`` reports every entry that is wrong; a worker (and beat) refuses to
start with one, naming it, instead of running without a hook the project counts on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.module_loading import import_string

from trigger_celery.core.hooks import HOOK_NAMES, Hook, check_hook
from trigger_celery.errors import ConfigurationError

# What a problem is about: the settings' shape (a check's E010) or one path (E011).
SHAPE, PATH = "shape", "path"


def named_hooks(
    hooks: Any, middleware: Any
) -> tuple[list[tuple[str, str, Hook]], list[tuple[str, str]]]:
    """Import what ``HOOKS`` and ``MIDDLEWARE`` name: ``(hook name, path, function)`` for
    each entry that imports as a callable, and ``(SHAPE | PATH, message)`` for each
    other, the message naming the entry. ``"middleware"`` is the hook name of
    middleware."""
    problems: list[tuple[str, str]] = []
    if not isinstance(hooks, Mapping):
        problems.append(
            (SHAPE, f"HOOKS is {hooks!r}; it must be a dict of hook name -> dotted path(s)")
        )
        hooks = {}
    if isinstance(middleware, str) or not isinstance(middleware, list | tuple):
        problems.append((SHAPE, f"MIDDLEWARE is {middleware!r}; it must be a list of dotted paths"))
        middleware = []
    entries: list[tuple[str, Any]] = []
    for name, paths in hooks.items():
        if name not in HOOK_NAMES:
            known = ", ".join(HOOK_NAMES)
            problems.append((SHAPE, f"HOOKS has an unknown hook {name!r}; known hooks: {known}"))
        elif isinstance(paths, str):
            entries.append((name, paths))
        elif isinstance(paths, list | tuple):
            entries += [(name, path) for path in paths]
        else:
            problems.append(
                (SHAPE, f"HOOKS[{name!r}] is {paths!r}; it must be a dotted path or a list of them")
            )
    entries += [("middleware", path) for path in middleware]
    found: list[tuple[str, str, Hook]] = []
    for name, path in entries:
        where = "MIDDLEWARE" if name == "middleware" else f"HOOKS[{name!r}]"
        if not isinstance(path, str) or not path.strip():
            problems.append((PATH, f"{where} has {path!r}, which is not a dotted path"))
            continue
        try:
            fn = import_string(path)
        except ImportError as exc:
            problems.append((PATH, f"{where} names {path!r}, which cannot be imported: {exc}"))
            continue
        if not callable(fn):
            problems.append((PATH, f"{where} names {path!r}, which is {fn!r}, not a function"))
            continue
        try:
            check_hook(name, fn)
        except ConfigurationError as exc:
            problems.append((PATH, f"{where} names {path!r}: {exc}"))
            continue
        found.append((name, path, fn))
    return found, problems
