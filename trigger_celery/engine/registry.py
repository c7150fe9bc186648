"""Task and queue definitions, and the registry of every one this process knows.

A definition is data: the run function, the resolved options and the hooks, validated
when the user's ``tasks.py`` is imported (an unknown option, a bad retry policy or a
duplicate id fails the import with a message that names the value). The engine reads
definitions from here; triggering lives in the engine and the public API
(:mod:`trigger_celery.api.definitions` adds ``.trigger()`` and friends).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from pydantic import BaseModel, TypeAdapter

from trigger_celery.core.decisions import message_of
from trigger_celery.core.durations import parse_duration
from trigger_celery.core.hooks import HOOK_NAMES, Hook, HookSet, middleware_name, signature_to_check
from trigger_celery.core.options import (
    MACHINE_PRESETS,
    QueueOptions,
    parse_rate_limit,
    task_id_problem,
)
from trigger_celery.core.queue_names import queue_name_problem
from trigger_celery.core.retry import RetryPolicy
from trigger_celery.core.schedules import ScheduledPayload, ScheduleSpec
from trigger_celery.errors import (
    ConfigurationError,
    DuplicateTaskIdError,
    TaskModuleImportError,
    TaskPayloadParsedError,
)

log = logging.getLogger("trigger_celery.registry")

RunFunction = Callable[..., Any]


@dataclass(frozen=True)
class Queue:
    """A named queue with global limits (SPEC 4); create with :func:`queue`."""

    name: str
    concurrency_limit: int | None = None
    total_limit: int | None = None
    rate_limit: str | None = None

    @property
    def rate(self) -> tuple[int, float] | None:
        return parse_rate_limit(self.rate_limit) if self.rate_limit else None


class Registry:
    """Every task and queue defined in this process."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.tasks: dict[str, TaskDefinition] = {}
        self.queues: dict[str, Queue] = {}
        self._declared: set[str] = set()  # names of the queues declared with queue(...)
        self._autodiscovered = False

    def add_task(self, definition: TaskDefinition) -> None:
        with self._lock:
            existing = self.tasks.get(definition.id)
            if existing is not None and not _same_origin(existing.run_fn, definition.run_fn):
                raise DuplicateTaskIdError(
                    f"task id {definition.id!r} is already used by "
                    f"{_origin(existing.run_fn)}; task ids must be unique across the project "
                    f"(second definition: {_origin(definition.run_fn)})"
                )
            self.tasks[definition.id] = definition

    def add_queue(self, q: Queue, *, declared: bool) -> Queue:
        """Register ``q``. A queue only named so far (``declared=False``: a task's own
        queue, a ``django.tasks`` queue name) gives way to its declaration, which the
        tasks that named it then use; two declarations must agree."""
        problem = queue_name_problem(q.name)
        if problem is not None:
            raise ConfigurationError(f"queue name {q.name!r} {problem}")
        with self._lock:
            existing = self.queues.get(q.name)
            if existing is not None and existing != q:
                if not declared:
                    return existing
                if q.name in self._declared:
                    raise ConfigurationError(
                        f"queue {q.name!r} is declared twice with different limits: "
                        f"{existing} and {q}"
                    )
                for definition in self.tasks.values():
                    if definition.queue is existing:
                        definition.queue = q
            self.queues[q.name] = q
            if declared:
                self._declared.add(q.name)
            return q

    def get_task(self, task_id: str) -> TaskDefinition | None:
        definition = self.tasks.get(task_id)
        if definition is None and not self._autodiscovered:
            self._autodiscover()
            definition = self.tasks.get(task_id)
        if definition is None and _import_defining_module(task_id):
            definition = self.tasks.get(task_id)
        return definition

    def require_queue(self, name: str) -> Queue:
        if name not in self.queues and not self._autodiscovered:
            self._autodiscover()
        try:
            return self.queues[name]
        except KeyError:
            known = ", ".join(sorted(self.queues)) or "none"
            raise ConfigurationError(
                f"queue {name!r} is not declared in code; declare it with "
                f"queue(name={name!r}, ...) (known queues: {known})"
            ) from None

    def ensure_discovered(self) -> None:
        """Import every installed app's ``tasks`` module now, if not yet done here."""
        if not self._autodiscovered:
            self._autodiscover()

    def _autodiscover(self) -> None:
        """Import ``<app>.tasks`` for every installed app, as Celery's autodiscovery does.

        A ``tasks`` module that fails to import is an error naming the module, raised on
        every call until it imports: hiding it would leave runs of its tasks waiting in
        PENDING_VERSION with no word of why.
        """
        for module in app_modules("tasks"):
            try:
                importlib.import_module(module)
            except Exception as exc:
                log.error("could not import %s", module, exc_info=True)
                raise TaskModuleImportError(
                    f"importing {module} failed: {type(exc).__name__}: {exc}"
                ) from exc
        self._autodiscovered = True


def app_modules(module: str) -> list[str]:
    """``<app>.<module>`` of every installed app that has such a module (``tasks``,
    ``trigger_init``)."""
    found = []
    for config in apps.get_app_configs():
        name = f"{config.name}.{module}"
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # the app's package itself cannot be found
            spec = None
        if spec is not None:
            found.append(name)
    return found


registry = Registry()


def project_packages() -> list[str]:
    """The project's own top-level packages: those of ``ROOT_URLCONF`` and of the
    settings module (``proj`` of ``proj.settings``), where ``startproject`` puts code."""
    names = [getattr(settings, "ROOT_URLCONF", None), getattr(settings, "SETTINGS_MODULE", None)]
    tops = (name.partition(".")[0] for name in names if isinstance(name, str) and name)
    return list(dict.fromkeys(top for top in tops if top))


def worker_imports(module: str) -> bool:
    """Whether a worker imports ``module`` to find a task a run names: a module of an
    installed app or of the project package, the deployment's own code. Nothing else,
    so a run row cannot make a worker import an arbitrary module."""
    roots = [config.name for config in apps.get_app_configs()] + project_packages()
    return bool(module) and any(module == r or module.startswith(r + ".") for r in roots)


def _import_defining_module(task_id: str) -> bool:
    """Import the module a dotted task id names, if a worker may (:func:`worker_imports`).

    A ``django.tasks`` task is registered under its module path (``app.jobs.send``) when
    its module is imported, and that module need not be ``<app>.tasks``.
    """
    module = task_id.rpartition(".")[0]
    if not worker_imports(module):
        return False
    try:
        importlib.import_module(module)
    except ImportError:
        log.warning("task %r: could not import %s", task_id, module, exc_info=True)
        return False
    return True


def _origin(fn: Callable[..., Any]) -> tuple[Any, ...]:
    """Where a run function is written: its file and first line when it has code."""
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is not None:
        return (code.co_filename, code.co_firstlineno, getattr(fn, "__qualname__", ""))
    return (getattr(fn, "__module__", "?"), getattr(fn, "__qualname__", repr(fn)))


def _run_signature_problem(fn: Callable[..., Any]) -> str | None:
    """Why a worker could not call ``fn(payload)`` or ``fn(payload, ctx)`` (as
    ``worker.user_code.call_run_function`` does), or None."""
    signature = signature_to_check(fn)
    if signature is None:
        return None  # it is called as it is
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keyword_only = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    required = [p.name for p in positional if p.default is p.empty]
    takes_varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
    if keyword_only:
        return f"needs keyword-only {', '.join(map(repr, keyword_only))}, which it is never given"
    if not positional and not takes_varargs:
        return "takes no argument; a run function takes (payload) or (payload, ctx)"
    if len(required) > 2:
        return f"needs {', '.join(map(repr, required))}; a run function takes (payload) or (payload, ctx)"
    return None


def _same_origin(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # The same file imported twice (a reload, two import paths) is not a duplicate; two
    # definitions at two places are, even with one name in one module.
    return _origin(a) == _origin(b)


def _resolve_queue(task_id: str, value: Any) -> Queue:
    if value is None:
        return registry.add_queue(Queue(task_id), declared=False)
    if isinstance(value, Queue):
        return registry.add_queue(value, declared=True)
    if isinstance(value, str):
        return registry.require_queue(value)
    if isinstance(value, Mapping):
        opts = QueueOptions(**value)
        q = Queue(opts.name or task_id, opts.concurrency_limit, opts.total_limit, opts.rate_limit)
        return registry.add_queue(q, declared=opts.name is not None)
    raise ConfigurationError(
        f"task {task_id!r}: queue must be a queue(...) object, a queue name or a dict "
        f"like {{'concurrency_limit': 1}}, got {value!r}"
    )


class TaskDefinition:
    """A task: its id, run function, options and hooks. Created by :func:`task`."""

    def __init__(
        self,
        *,
        id: str,
        run: RunFunction,
        retry: RetryPolicy | Mapping[str, Any] | int | None = None,
        queue: Queue | Mapping[str, Any] | str | None = None,
        machine: str | None = None,
        max_duration: Any = None,
        description: str = "",
        schema: Any = None,
        is_schema_task: bool = False,
        hooks: Mapping[str, Hook] | None = None,
        middleware: Iterable[tuple[str, Hook]] | None = None,
        scheduled: bool = False,
        cron: Any = None,
    ) -> None:
        bad_id = task_id_problem(id)
        if bad_id is not None:
            raise ConfigurationError(bad_id)
        if not callable(run):
            raise ConfigurationError(f"task {id!r}: run must be a function, got {run!r}")
        bad_run = _run_signature_problem(run)
        if bad_run is not None:
            raise ConfigurationError(f"task {id!r}: run {_origin(run)[-1]!r} {bad_run}")
        self.id = id
        self.run_fn = run
        self.is_async = inspect.iscoroutinefunction(run)
        try:
            self.retry = None if retry is None else RetryPolicy.from_value(retry)
        except ValueError as exc:
            raise ConfigurationError(f"task {id!r}: retry: {exc}") from None
        self.queue = _resolve_queue(id, queue)
        if machine is not None and machine not in MACHINE_PRESETS:
            raise ConfigurationError(
                f"task {id!r}: machine {machine!r} is not a preset; use one of {', '.join(MACHINE_PRESETS)}"
            )
        self.machine = machine
        self.max_duration = (
            None
            if max_duration is None
            else int(parse_duration(max_duration, name="max_duration", minimum=5).total_seconds())
        )
        if not isinstance(description, str):
            raise ConfigurationError(
                f"task {id!r}: description must be a string, got {description!r}"
            )
        self.description = description
        # A schedules.task: its payload is a ScheduledPayload, and ``cron=`` declares
        # the schedule that is synced from code (SPEC 8).
        self.is_scheduled = scheduled
        self.declared_schedule = (
            ScheduleSpec.from_declaration(cron, task_id=id) if cron is not None else None
        )
        if cron is not None and not scheduled:
            raise ConfigurationError(f"task {id!r}: cron= is only accepted by schedules.task")
        if scheduled:
            schema, is_schema_task = ScheduledPayload, True
        self.is_schema_task = is_schema_task
        self._parser = _make_parser(id, schema) if is_schema_task else None
        self.schema = schema
        self.hooks = HookSet()
        try:
            for name, fn in (hooks or {}).items():
                self.hooks.add(name, fn)
        except ConfigurationError as exc:
            raise ConfigurationError(f"task {id!r}: {exc}") from None
        for name, fn in middleware or ():
            self.hooks.add_middleware(name, fn)
        registry.add_task(self)

    def __repr__(self) -> str:
        return f"<TaskDefinition {self.id!r}>"

    # -- payloads -----------------------------------------------------------------------
    def parse_payload(self, payload: Any) -> Any:
        """Validate a payload with the task's schema; plain tasks return it unchanged.

        Raises the schema's own error (e.g. pydantic ``ValidationError``).
        """
        if self._parser is None:
            return payload
        return self._parser(payload)

    def parse_payload_in_worker(self, payload: Any) -> Any:
        try:
            return self.parse_payload(payload)
        except Exception as exc:  # a callable parser may raise anything (KeyError, ...)
            raise TaskPayloadParsedError(
                f"Parsing payload with schema failed: {message_of(exc)}", cause=exc
            ) from exc

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON Schema of the payload (schema tasks with a pydantic schema), else None."""
        schema = self.schema
        try:
            if isinstance(schema, type) and issubclass(schema, BaseModel):
                return schema.model_json_schema()
            if isinstance(schema, TypeAdapter):
                return schema.json_schema()
            custom = getattr(schema, "json_schema", None)
            return custom() if callable(custom) else None
        except Exception:
            # A model with a field JSON Schema has no words for (an arbitrary type), or a
            # schema's own json_schema() that fails: it still validates payloads, and
            # the pages that show schemas show none for it instead of failing.
            log.warning("task %r: its schema gives no JSON Schema", self.id, exc_info=True)
            return None

    # -- hook decorators --------------------------------------------------------------
    def _hook_decorator(self, name: str) -> Callable[[Hook], Hook]:
        def register(fn: Hook) -> Hook:
            return self.hooks.add(name, fn)

        return register

    def middleware(self, name: str | Hook) -> Any:
        """``@my_task.middleware("db")``, or bare (``@my_task.middleware``: named by the
        function)."""
        label, given = middleware_name(name, None)
        if given is not None:
            return self.hooks.add_middleware(label, given)

        def register(fn: Hook) -> Hook:
            return self.hooks.add_middleware(label, fn)

        return register

    def __getattr__(self, name: str) -> Any:
        if name in HOOK_NAMES:
            return self._hook_decorator(name)
        raise AttributeError(name)


def _make_parser(task_id: str, schema: Any) -> Callable[[Any], Any]:
    if schema is None:
        raise ConfigurationError(f"schema task {task_id!r} needs schema=...")
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        adapter: TypeAdapter[Any] = TypeAdapter(schema)
        return adapter.validate_python
    if isinstance(schema, TypeAdapter):
        return schema.validate_python
    if callable(schema):
        return schema
    raise ConfigurationError(
        f"schema task {task_id!r}: schema must be a pydantic model, a TypeAdapter or a "
        f"callable parser, got {schema!r}"
    )
