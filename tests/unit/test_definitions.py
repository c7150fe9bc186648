"""Task and queue definitions fail at import time, with the bad value named."""

import functools

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from trigger_celery import queue, schema_task, task, tasks
from trigger_celery.core.hooks import global_hooks
from trigger_celery.engine.registry import registry
from trigger_celery.errors import ConfigurationError, DuplicateTaskIdError, TaskPayloadParsedError


def _run(payload, ctx):
    return payload


def test_decorator_and_call_styles_register_the_task():
    @task(id="unit-decorated")
    def decorated(payload, ctx):
        return 1

    plain = task(id="unit-plain", run=_run, description="plain")
    assert registry.tasks["unit-decorated"] is decorated
    assert registry.tasks["unit-plain"] is plain
    assert plain.queue.name == "unit-plain"  # every task has its own queue by default


def test_duplicate_task_id_is_refused_naming_both_definitions():
    task(id="unit-dup", run=_run)

    def other(payload, ctx):
        return None

    with pytest.raises(DuplicateTaskIdError) as info:
        task(id="unit-dup", run=other)
    assert "'unit-dup'" in str(info.value)
    assert "_run" in str(info.value) and "other" in str(info.value)


def test_two_definitions_with_one_name_in_one_module_are_duplicates():
    def handler(payload, ctx):
        return 1

    task(id="unit-dup-same-name", run=handler)
    task(id="unit-dup-same-name", run=handler)  # the same function again: not a duplicate

    def handler(payload, ctx):  # a second definition, copied and pasted
        return 2

    with pytest.raises(DuplicateTaskIdError, match="'unit-dup-same-name'"):
        task(id="unit-dup-same-name", run=handler)
    task(id="unit-dup-lambda", run=lambda payload: 1)
    with pytest.raises(DuplicateTaskIdError):
        task(id="unit-dup-lambda", run=lambda payload: 2)


def test_a_description_that_is_not_text_is_refused_by_name():
    with pytest.raises(ConfigurationError, match="description must be a string, got 5"):
        task(id="unit-bad-description", run=_run, description=5)


def test_unknown_task_option_is_refused_with_the_accepted_ones():
    with pytest.raises(ConfigurationError) as info:
        task(id="unit-typo", run=_run, retries={"max_attempts": 2})
    assert "retries" in str(info.value)
    assert "accepted:" in str(info.value)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"retry": {"max_attempts": 0}}, "max_attempts"),
        ({"retry": {"tries": 2}}, "'tries'"),
        ({"machine": "gigantic"}, "'gigantic'"),
        ({"max_duration": 3}, "max_duration"),
        ({"queue": {"concurrency_limit": 0}}, "concurrency_limit"),
        ({"queue": 5}, "5"),
        ({"queue": "no-such-queue"}, "'no-such-queue' is not declared"),
        ({"on_success": "not callable"}, "on_success"),
        ({"middleware": [("db", _run)]}, "got [('db', <function _run"),
    ],
)
def test_bad_task_options_fail_at_definition(options, fragment):
    task_id = f"unit-bad-{abs(hash(repr(options)))}"
    with pytest.raises(ValueError) as info:
        task(id=task_id, run=_run, **options)
    assert fragment in str(info.value)
    # The task is named too: in the message, or in a note its traceback shows.
    assert repr(task_id) in "\n".join([str(info.value), *getattr(info.value, "__notes__", [])])


@pytest.mark.parametrize("bad_id", ["", "   ", None, 5, "x" * 256])
def test_bad_task_ids(bad_id):
    with pytest.raises(ConfigurationError):
        task(id=bad_id, run=_run)


def test_shared_queue_objects_and_conflicting_redeclaration():
    shared = queue(name="unit-shared", concurrency_limit=2)
    a = task(id="unit-shared-a", run=_run, queue=shared)
    b = task(id="unit-shared-b", run=_run, queue="unit-shared")
    assert a.queue is b.queue or a.queue == b.queue == shared
    with pytest.raises(ConfigurationError, match="declared twice"):
        queue(name="unit-shared", concurrency_limit=3)
    with pytest.raises(ValueError, match="concurrency_limit"):
        queue(name="unit-zero", concurrency_limit=0)
    # The range an override takes (queues.override_limit, the dashboard): 1 to 100,000.
    with pytest.raises(ValueError, match=r"total_limit: 1000000000 is out of range; .*100000"):
        queue(name="unit-huge", total_limit=10**9)
    assert queue(name="unit-most", concurrency_limit=100_000).concurrency_limit == 100_000


def test_a_declaration_replaces_a_queue_only_named_so_far():
    """A task's own queue, or a django.tasks queue name, gives way to queue(...) with the
    same name, imported later; the task then uses the declared limits."""
    named = task(id="unit-named-later", run=_run)
    assert named.queue.concurrency_limit is None
    declared = queue(name="unit-named-later", concurrency_limit=2)
    assert named.queue is declared
    with pytest.raises(ConfigurationError, match="declared twice"):
        queue(name="unit-named-later", concurrency_limit=3)


class Order(BaseModel):
    sku: str
    quantity: int = 1


def test_schema_task_with_a_pydantic_model():
    t = schema_task(id="unit-schema-model", schema=Order, run=_run)
    assert t.parse_payload({"sku": "A"}) == Order(sku="A", quantity=1)
    with pytest.raises(ValidationError):
        t.parse_payload({"quantity": 2})
    with pytest.raises(TaskPayloadParsedError, match="Parsing payload with schema failed"):
        t.parse_payload_in_worker({"quantity": 2})
    assert t.json_schema()["required"] == ["sku"]


def test_schema_task_with_a_type_adapter_and_a_callable():
    adapter = schema_task(id="unit-schema-adapter", schema=TypeAdapter(list[int]), run=_run)
    assert adapter.parse_payload(["1", 2]) == [1, 2]
    assert adapter.json_schema() == {"items": {"type": "integer"}, "type": "array"}

    def parser(value):
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value.upper()

    custom = schema_task(id="unit-schema-callable", schema=parser, run=_run)
    assert custom.parse_payload("abc") == "ABC"
    assert custom.json_schema() is None
    with pytest.raises(TaskPayloadParsedError):
        custom.parse_payload_in_worker(3)
    # A parser may raise anything: in the worker it is still the payload that failed.
    picky = schema_task(id="unit-schema-keyerror", schema=lambda p: {"n": p["n"]}, run=_run)
    with pytest.raises(TaskPayloadParsedError, match="'n'"):
        picky.parse_payload_in_worker({"m": 1})


def test_schema_task_needs_a_usable_schema():
    with pytest.raises(ConfigurationError):
        schema_task(id="unit-schema-missing", run=_run)
    with pytest.raises(ConfigurationError):
        schema_task(id="unit-schema-bad", schema=42, run=_run)


def test_hook_decorators_register_on_the_task():
    t = task(id="unit-hooks", run=_run)

    @t.on_success
    def done(output):
        return output

    assert t.hooks.get("on_success") == [done]
    with pytest.raises(AttributeError):
        t.on_sucess  # noqa: B018 - a typo is an AttributeError, not a silent hook


def test_a_hook_naming_an_argument_it_is_never_given_fails_the_definition():
    def on_success(ctx, outputt):  # a typo: "output"
        return None

    with pytest.raises(ConfigurationError) as info:
        task(id="unit-hook-typo", run=_run, on_success=on_success)
    assert "'unit-hook-typo'" in str(info.value) and "'outputt'" in str(info.value)
    assert "unit-hook-typo" not in registry.tasks

    def catch(ctx, err):  # catch_error gets "error"
        return None

    with pytest.raises(ConfigurationError, match=r"catch_error.*'err'"):
        task(id="unit-catch-typo", run=_run, catch_error=catch)
    with pytest.raises(ConfigurationError, match=r"on_failure.*'exc'"):
        tasks.on_failure(lambda ctx, exc: None)
    with pytest.raises(ConfigurationError, match=r"middleware.*'call_next'"):
        tasks.middleware("unit-mw", lambda ctx, payload, call_next: call_next())


def test_functions_behind_a_decorator_that_gives_them_arguments_are_accepted():
    """A functools.wraps decorator that passes an argument of its own (a session, say)
    shows the inner signature; its wrapper takes anything, so nothing is refused."""

    def with_session(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn("session", *args, **kwargs)

        return wrapper

    @with_session
    def run(session, payload, ctx):
        return session

    @with_session
    def on_failure(session, ctx, error):
        return None

    definition = task(id="unit-decorated-session", run=run, on_failure=on_failure)
    assert registry.tasks["unit-decorated-session"] is definition


def test_middleware_naming_init_is_refused_it_is_never_given_init():
    with pytest.raises(ConfigurationError, match=r"middleware.*'init'"):
        tasks.middleware("unit-mw-init", lambda ctx, next, init: next())


def test_hooks_taking_what_they_are_given_or_defaults_are_accepted():
    definition = task(
        id="unit-hooks-fine",
        run=_run,
        on_complete=lambda ctx, output, error, result: None,
        on_failure=lambda error, extra=1, *args, **kwargs: None,
        catch_error=lambda ctx, error, retry_at, retry_delay_in_ms: None,
        on_cancel=lambda ctx, signal, run_finished: None,
        on_wait=lambda wait: None,
    )
    assert registry.tasks["unit-hooks-fine"] is definition


@pytest.mark.parametrize(
    "run, fragment",
    [
        (lambda: None, "takes no argument"),
        (lambda payload, ctx, extra: None, "'payload', 'ctx', 'extra'"),
        (lambda payload, *, user: None, "keyword-only 'user'"),
    ],
)
def test_a_run_function_a_worker_cannot_call_fails_the_definition(run, fragment):
    with pytest.raises(ConfigurationError) as info:
        task(id="unit-bad-run", run=run)
    assert "'unit-bad-run'" in str(info.value) and fragment in str(info.value)


def test_run_functions_of_every_callable_shape_are_accepted():
    task(id="unit-run-one", run=lambda payload: None)
    task(id="unit-run-args", run=lambda *args: None)
    task(id="unit-run-default", run=lambda payload, ctx=None, extra=1, **kw: None)


@pytest.mark.parametrize("name", ["odd\x1fname", "tab\tname", "new\nline", "del\x7f"])
def test_a_queue_name_with_a_control_character_is_refused_naming_it(name):
    """The store keeps a queue's runs under "<queue>\\x1f<concurrency key>" and splits at
    the first separator: a queue named with one was counted as another queue, and its
    limit never held (six runs at once on a limit-1 queue, with two workers)."""
    from trigger_celery.engine.registry import Queue

    with pytest.raises(ConfigurationError, match="contains a control character") as info:
        queue(name=name, concurrency_limit=1)
    assert repr(name) in str(info.value)
    with pytest.raises(ConfigurationError, match="contains a control character"):
        registry.add_queue(Queue(name), declared=False)  # a django.tasks queue name
    assert name not in registry.queues


@pytest.mark.parametrize("name", [".", "..", "a/../b", "./x", "x/."])
def test_a_queue_name_with_a_dot_path_segment_is_refused_naming_it(name):
    """The dashboard's action URLs carry the queue's name, and a browser resolves "."
    and ".." segments in them: pausing "a/../b" would pause queue "b"."""
    from trigger_celery.engine.registry import Queue

    with pytest.raises(ConfigurationError, match=r"has a '\.' or '\.\.' path segment") as info:
        queue(name=name, concurrency_limit=1)
    assert repr(name) in str(info.value)
    with pytest.raises(ConfigurationError, match="path segment"):
        registry.add_queue(Queue(name), declared=False)  # a django.tasks queue name
    with pytest.raises(ConfigurationError, match="path segment"):
        task(id=name, run=_run)  # its own queue is named after it
    assert name not in registry.queues and name not in registry.tasks


def test_a_per_key_limit_above_the_total_is_a_system_check_warning_naming_both(caplog):
    from trigger_celery.checks import check_tasks_modules
    from trigger_celery.startup_checks import report_settings

    queue(name="unit-over-total", concurrency_key_limit=3, total_limit=2)
    task(id="unit-over-total-task", run=_run, queue={"concurrency_limit": 5, "total_limit": 4})
    try:
        said = {m.msg: m.id for m in check_tasks_modules()}
        # A worker logs them at start too (Celery runs no system checks).
        with caplog.at_level("WARNING", logger="trigger_celery"):
            assert report_settings() >= 2
        logged = caplog.text
        assert "trigger_celery.W016: queue 'unit-over-total': its per-key limit 3" in logged
        assert said == {
            "queue 'unit-over-total': its per-key limit 3 is above its total_limit 2, so no "
            "concurrency key can reach it; each key runs at most 2": "trigger_celery.W016",
            "queue 'unit-over-total-task': its per-key limit 5 is above its total_limit 4, "
            "so no concurrency key can reach it; each key runs at most 4": "trigger_celery.W016",
        }
    finally:
        for name in ("unit-over-total", "unit-over-total-task"):
            registry.queues.pop(name, None)
            registry._declared.discard(name)
        registry.tasks.pop("unit-over-total-task", None)


def test_an_override_above_the_queues_total_is_refused_naming_both():
    from trigger_celery.api.queues import queues

    queue(name="unit-override-total", concurrency_key_limit=2, total_limit=4)
    with pytest.raises(ValueError, match="concurrency limit of 5 is above its total_limit 4"):
        queues.override_limit("unit-override-total", 5)  # refused before the database


@pytest.mark.parametrize("keyed", [False, True])
def test_a_batch_item_naming_an_undeclared_queue_is_refused_with_its_index(keyed):
    """Refused like a bad option of that item, before anything is written: an item with
    an idempotency key is triggered on its own after the batch's rows are written."""
    child = task(id="unit-batch-queue-child", run=_run)
    options = {"queue": "unit-no-such-queue"}
    if keyed:
        options["idempotency_key"] = "unit-key"
    items = [{"payload": 1}, {"payload": 2, "options": options}]
    with pytest.raises(ConfigurationError, match=r"^batch item 1: queue 'unit-no-such-queue'"):
        child.batch_trigger(items)


@pytest.fixture
def own_global_middleware():
    """The global middleware as it was before the test, whatever the test registered."""
    before = list(global_hooks.middleware)
    yield
    global_hooks.middleware = before


def test_middleware_that_takes_no_next_is_refused_it_could_never_run_the_attempt(
    own_global_middleware,
):
    with pytest.raises(ConfigurationError, match=r"middleware .* takes no 'next' parameter"):
        tasks.middleware("unit-mw-no-next", lambda ctx, payload: None)
    definition = task(id="unit-mw-no-next-task", run=_run)
    with pytest.raises(ConfigurationError, match=r"takes no 'next' parameter"):
        definition.middleware("mine")(lambda ctx: None)
    # Taking anything by keyword is fine: it is given next.
    tasks.middleware("unit-mw-kwargs", lambda **kwargs: kwargs["next"]())
    assert "unit-mw-kwargs" in [name for name, _ in global_hooks.middleware]


def test_middleware_as_a_bare_decorator_is_registered_under_its_dotted_path(
    own_global_middleware,
):
    @tasks.middleware
    def timing(ctx, next):
        return next()

    definition = task(id="unit-bare-mw-task", run=_run)

    @definition.middleware
    def unit_bare_own(ctx, next):
        return next()

    where = f"{__name__}.test_middleware_as_a_bare_decorator_is_registered_under_its_dotted_path"
    assert callable(timing) and timing.__name__ == "timing"
    assert (f"{where}.<locals>.timing", timing) in global_hooks.middleware
    assert definition.hooks.middleware == [(f"{where}.<locals>.unit_bare_own", unit_bare_own)]
    with pytest.raises(ConfigurationError, match="middleware name must be a non-empty string"):
        tasks.middleware(42)
    with pytest.raises(ConfigurationError, match="has no name of its own"):
        tasks.middleware(functools.partial(lambda ctx, next: next()))


def _timing(ctx, payload, next):
    return next()


def _tracing(ctx, payload, next):
    return next()


def test_a_tasks_middleware_may_be_one_function_or_a_list_named_by_their_dotted_paths():
    """As Trigger.dev's per-task ``middleware`` option takes it: before, only a dict of
    name -> function was taken, and a function was refused."""
    one = task(id="unit-mw-one", run=_run, middleware=_timing)
    assert one.hooks.middleware == [(f"{__name__}._timing", _timing)]
    both = task(id="unit-mw-list", run=_run, middleware=[_timing, _tracing])
    assert [name for name, _ in both.hooks.middleware] == [
        f"{__name__}._timing",
        f"{__name__}._tracing",
    ]
    with pytest.raises(ConfigurationError, match=r"middleware .* takes no 'next' parameter"):
        task(id="unit-mw-bad", run=_run, middleware=lambda ctx, payload: None)
