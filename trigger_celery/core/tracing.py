"""OpenTelemetry spans of runs (the ``[otel]`` extra): a producer span when a run is
triggered, a consumer span for each attempt, linked across the trigger → worker gap.

The trace context travels on the run row (W3C ``traceparent``/``tracestate``), written
at trigger time inside the producer span, so the attempt's span is its child however
long the run waited, whichever worker runs it, and after a retry. A run triggered from
inside an attempt starts under that attempt's span, so parent → child runs nest.

A run triggered where no SDK is set up (a shell, a web process or beat without one) has
no context on its row: the first execution that is traced records a stand-in trigger
span for it (:func:`stand_in_trigger`) and stores that context, so its attempts,
resumes and children still make one trace.

Without ``opentelemetry-api`` installed, or with no SDK configured, everything here is
a no-op and the row's context stays empty. The SDK (exporters, sampling) is set up by
the project, per process; under Celery's prefork pool that is in
``worker_process_init``, as OpenTelemetry's docs advise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from trigger_celery.core.decisions import message_of

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the optional extra is not installed
    trace = None  # type: ignore[assignment]

TRACER_NAME = "trigger_celery"


def enabled() -> bool:
    """True when an SDK tracer provider is installed (the API alone records nothing)."""
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def carrier() -> dict[str, str]:
    """The current span's context as W3C headers, to store on a new run."""
    if not enabled():
        return {}
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


@contextmanager
def span(
    name: str,
    *,
    consumer: bool = False,
    parent: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """A span around the block; ``parent`` is a carrier from :func:`carrier`."""
    if not enabled():
        yield None
        return
    context = propagate.extract(dict(parent)) if parent else None
    links = []
    if parent:
        # A span already open here (opentelemetry-instrumentation-celery's for the
        # message) is not the run's parent, the trigger is; it is linked instead.
        around = trace.get_current_span().get_span_context()
        if around.is_valid:
            links.append(trace.Link(around))
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=SpanKind.CONSUMER if consumer else SpanKind.PRODUCER,
        attributes={k: v for k, v in (attributes or {}).items() if v is not None},
        links=links,
    ) as current:
        yield current


@contextmanager
def open_producer_span(name: str, *, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A producer span, current inside the block and still open after it: the caller
    ends it (``.end()``) once what it names exists, e.g. when the row commits. One that
    is never ended is never exported (the row was not written after all)."""
    if not enabled():
        yield None
        return
    started = trace.get_tracer(TRACER_NAME).start_span(
        name,
        kind=SpanKind.PRODUCER,
        attributes={k: v for k, v in (attributes or {}).items() if v is not None},
    )
    with trace.use_span(started, end_on_exit=False):
        yield started


def set_outcome(current: Any, outcome: str, error: BaseException | None = None) -> None:
    """Mark an attempt's span with how it ended; an error makes it an error span."""
    if current is None:
        return
    current.set_attribute("trigger_celery.outcome", outcome)
    if error is not None:
        try:
            current.record_exception(error)
        except Exception:  # an error whose __str__ raises: recorded with a stand-in
            current.add_event(
                "exception",
                {"exception.type": type(error).__name__, "exception.message": message_of(error)},
            )
        current.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {message_of(error)}"))


def abandon(current: Any, outcome: str, error: BaseException | None = None) -> None:
    """End an attempt's span from another thread, and send what the process's exporters
    hold: its process is about to exit without leaving the span's block (an attempt
    that ignored its stop), and a span never ended is never exported."""
    if current is None:
        return
    set_outcome(current, outcome, error)
    current.end()
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        flush(2000)


def stand_in_trigger(
    name: str, at: datetime, attributes: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The trigger span of a run triggered where nothing was traced: a root producer span
    at the run's creation, recorded by the process that first runs it. Returns its
    context as W3C headers, for the run row (empty when tracing is off)."""
    if not enabled():
        return {}
    tracer = trace.get_tracer(TRACER_NAME)
    when = int(at.timestamp() * 1e9)
    stand_in = tracer.start_span(
        name,
        context=otel_context.Context(),  # a root: not under Celery's span, if one is open
        kind=SpanKind.PRODUCER,
        start_time=when,
        attributes={k: v for k, v in (attributes or {}).items() if v is not None},
    )
    stand_in.end(end_time=when)
    headers: dict[str, str] = {}
    propagate.inject(headers, context=trace.set_span_in_context(stand_in))
    return headers


def record_span(
    name: str, start: datetime, end: datetime, attributes: Mapping[str, Any] | None = None
) -> None:
    """A finished span of the past (a wait, from its start to its completion), as a child
    of the current span."""
    if not enabled():
        return
    tracer = trace.get_tracer(TRACER_NAME)
    span = tracer.start_span(
        name,
        start_time=int(start.timestamp() * 1e9),
        attributes={k: v for k, v in (attributes or {}).items() if v is not None},
    )
    span.end(end_time=int(end.timestamp() * 1e9))


def record_lost_attempt(
    name: str,
    *,
    parent: Mapping[str, str] | None,
    start: datetime,
    end: datetime,
    attributes: Mapping[str, Any],
    outcome: str,
    error: BaseException,
) -> None:
    """The span of an attempt whose process died under it (SIGKILL, the OOM killer): a
    span never ended is never exported, so the process that finds the crash records one
    in its place, from the attempt's start to the crash's discovery, under the run's
    trigger like every attempt span."""
    if not enabled():
        return
    tracer = trace.get_tracer(TRACER_NAME)
    lost = tracer.start_span(
        name,
        context=propagate.extract(dict(parent)) if parent else None,
        kind=SpanKind.CONSUMER,
        start_time=int(start.timestamp() * 1e9),
        attributes={k: v for k, v in attributes.items() if v is not None},
    )
    set_outcome(lost, outcome, error)
    lost.end(end_time=int(end.timestamp() * 1e9))
