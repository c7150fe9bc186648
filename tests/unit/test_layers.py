"""The package's layers, read from its source: imports only go down, and no cycles.

    core, errors            pure Python: no Django, Celery or Redis
    conf, models            Django's settings and rows
    coordination            the stores
    engine                  the run lifecycle on the database
    worker                  what runs inside Celery
    api                     what users import
    Django side             apps, admin, views, urls, checks, forms, beat, ...

A module may import its own layer and the layers below. A function-level import is an
exception that needs a reason on the allow-list below.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from trigger_celery.core.statuses import RunStatus

PACKAGE = Path(__file__).resolve().parents[2] / "trigger_celery"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("trigger_celery.core", "trigger_celery.errors")),
    (
        "data",
        (
            "trigger_celery.conf",
            "trigger_celery.db",
            "trigger_celery.off_loop",
            "trigger_celery.models",
            "trigger_celery.dashboard_models",
            "trigger_celery.store_models",
            "trigger_celery.key_models",
            "trigger_celery.schedule_models",
            "trigger_celery.index_uses",
            "trigger_celery.migration_state",
            "trigger_celery.migrations",
        ),
    ),
    ("coordination", ("trigger_celery.coordination",)),
    ("engine", ("trigger_celery.engine",)),
    ("worker", ("trigger_celery.worker",)),
    (
        "api",
        (
            "trigger_celery.api",
            "trigger_celery.django_tasks",
            "trigger_celery.django_task_results",
            "trigger_celery.django_task_worker",
        ),
    ),
    (
        "django",
        (
            "trigger_celery.apps",
            "trigger_celery.checks",
            "trigger_celery.celery_checks",
            "trigger_celery.admin",
            "trigger_celery.admin_base",
            "trigger_celery.admin_lists",
            "trigger_celery.schedule_admin",
            "trigger_celery.forms",
            "trigger_celery.views",
            "trigger_celery.urls",
            "trigger_celery.management",
            "trigger_celery.beat",
            "trigger_celery.startup_checks",
            "trigger_celery.devserver",
            "trigger_celery.default_broker",
            "trigger_celery.bulk",
            "trigger_celery.metrics",
        ),
    ),
]

# Function-level imports allowed, each with why it cannot be at the top of its module.
FUNCTION_LEVEL_ALLOWED: dict[tuple[str, str], str] = {
    ("trigger_celery.checks", "psycopg"): (
        "names a PostgreSQL isolation level; psycopg is installed only with PostgreSQL"
    ),
    ("trigger_celery.apps", "trigger_celery.checks"): (
        "imports the models, which Django loads after every AppConfig"
    ),
    ("trigger_celery.apps", "trigger_celery.worker.celery_task"): (
        "imports the models, which Django loads after every AppConfig"
    ),
    ("trigger_celery.apps", "trigger_celery.metrics.recorder"): (
        "imports the models, which Django loads after every AppConfig"
    ),
    ("trigger_celery.apps", "trigger_celery.django_tasks"): (
        "needs django.tasks (Django 6.0+) and imports the models"
    ),
    ("trigger_celery.apps", "trigger_celery.worker.signals"): (
        "imports the models, which Django loads after every AppConfig"
    ),
    ("trigger_celery.apps", "trigger_celery.startup_checks"): (
        "imports the models, which Django loads after every AppConfig"
    ),
}

FORBIDDEN_IN_CORE = ("django", "celery", "kombu", "billiard", "redis")
MAX_LINES = 420


@dataclass(frozen=True)
class Import:
    source: str
    target: str  # a module of the package, or an outside top-level package
    line: int
    function_level: bool
    type_checking: bool


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str:
    """The package module ``name`` refers to (``a.b.c`` may be a name inside ``a.b``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports_of(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[Import] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, function_level: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            in_function = function_level or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            )
            in_tc = type_checking or (
                isinstance(child, ast.If)
                and isinstance(child.test, ast.Name)
                and child.test.id == "TYPE_CHECKING"
            )
            if isinstance(child, ast.Import):
                for alias in child.names:
                    target = (
                        _resolve(alias.name)
                        if alias.name.startswith("trigger_celery")
                        else alias.name
                    )
                    found.append(Import(module, target, child.lineno, function_level, in_tc))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    if child.level > 1:
                        anchor = anchor[: -(child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                if base.startswith("trigger_celery"):
                    for alias in child.names:
                        target = _resolve(f"{base}.{alias.name}")
                        found.append(Import(module, target, child.lineno, function_level, in_tc))
                else:
                    found.append(Import(module, base, child.lineno, function_level, in_tc))
            visit(child, in_function, in_tc)

    visit(tree, False, False)
    return found


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports_of(module, path)]


def layer_of(module: str) -> int | None:
    for rank, (_name, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def test_every_module_has_a_layer():
    # The package root only re-exports lazily; every other module sits in a layer.
    orphans = [m for m in MODULES if m != "trigger_celery" and layer_of(m) is None]
    assert orphans == [], f"modules outside every layer: {orphans}"


def _upward(imports: list[Import]) -> list[str]:
    upward = []
    for imp in imports:
        if not imp.target.startswith("trigger_celery") or imp.type_checking:
            continue
        src, dst = layer_of(imp.source), layer_of(imp.target)
        if src is None or dst is None:
            if imp.target == "trigger_celery" and imp.source != "trigger_celery":
                upward.append(f"{imp.source}:{imp.line} imports the package root")
            continue
        if dst > src:
            upward.append(
                f"{imp.source}:{imp.line} ({LAYERS[src][0]}) imports {imp.target} "
                f"({LAYERS[dst][0]})"
            )
    return upward


def test_imports_only_go_down():
    upward = _upward(IMPORTS)
    assert upward == [], "imports that go up a layer:\n" + "\n".join(upward)


def test_function_level_imports_are_on_the_allow_list():
    unlisted = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in IMPORTS
        if imp.function_level and (imp.source, imp.target) not in FUNCTION_LEVEL_ALLOWED
    ]
    assert unlisted == [], "function-level imports without a listed reason:\n" + "\n".join(unlisted)


def test_the_allow_list_has_no_stale_entries():
    used = {(i.source, i.target) for i in IMPORTS if i.function_level}
    assert set(FUNCTION_LEVEL_ALLOWED) <= used


def _core_violations(imports: list[Import]) -> list[str]:
    return [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in imports
        if layer_of(imp.source) == 0 and imp.target.split(".")[0] in FORBIDDEN_IN_CORE
    ]


def test_core_imports_no_django_celery_or_redis():
    assert _core_violations(IMPORTS) == []


def test_no_import_cycle():
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in IMPORTS:
        if (
            imp.target.startswith("trigger_celery")
            and not imp.function_level
            and not imp.type_checking
            and imp.target != imp.source
        ):
            graph[imp.source].add(imp.target)
    cycles = _strongly_connected(graph)
    assert cycles == [], f"import cycles: {cycles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_modules_hold_one_idea():
    long = {
        m: n
        for m, p in MODULES.items()
        if "migrations" not in m and (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def _status_writes(path: Path) -> list[int]:
    """Lines that write a status: ``.update(status=...)`` or SQL ``SET status``."""
    tree = ast.parse(path.read_text())
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "update"
            and any(k.arg == "status" for k in node.keywords)
        ):
            lines.append(node.lineno)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "SET status" in node.value
        ):
            lines.append(node.lineno)
    return lines


def test_only_the_transitions_module_writes_a_status():
    writers = {
        m: lines
        for m, p in MODULES.items()
        if m != "trigger_celery.engine.transitions"
        and "migrations" not in m
        and (lines := _status_writes(p))
    }
    assert writers == {}, f"status written outside engine.transitions: {writers}"


def test_statuses_are_the_enum_never_string_literals():
    values = {s.value for s in RunStatus}
    literals = []
    for m, p in MODULES.items():
        if m in ("trigger_celery.core.statuses",) or "migrations" in m:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Constant) and node.value in values:
                literals.append(f"{m}:{node.lineno} {node.value!r}")
    assert literals == [], "status string literals:\n" + "\n".join(literals)


@pytest.mark.parametrize("bad", ["from django.db import models", "import redis", "import celery"])
def test_the_core_check_catches_a_forbidden_import(bad, tmp_path):
    # The checks above are only worth having if they can fail: feed them a fake module.
    fake = tmp_path / "fake.py"
    fake.write_text(f"{bad}\n")
    assert _core_violations(_imports_of("trigger_celery.core.fake", fake)) != []


def test_the_layer_check_catches_an_upward_import(tmp_path):
    fake = tmp_path / "fake.py"
    fake.write_text("from trigger_celery.engine import dispatch\n")
    assert _upward(_imports_of("trigger_celery.coordination.fake", fake)) != []
    assert _upward(_imports_of("trigger_celery.worker.fake", fake)) == []
