"""Queues page: live counts per queue and concurrency key; pause, resume, and a
concurrency limit overridden from here (stored in the database, honoured by every
worker through the shared store, resettable to the code's value)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from trigger_celery.api.queues import queues
from trigger_celery.conf import get_settings
from trigger_celery.core.options import MAX_QUEUE_LIMIT
from trigger_celery.engine.registry import registry
from trigger_celery.errors import ConfigurationError
from trigger_celery.views.access import can, dashboard_view


@dashboard_view("view_queuestate")
def queue_list(request: HttpRequest) -> HttpResponse:
    problem = ""
    try:
        rows = queues.list()
    except Exception as exc:  # the store is down: say so rather than fail the page
        rows, problem = [], f"the coordination store did not answer: {type(exc).__name__}: {exc}"
    return render(
        request,
        "trigger_celery/queue_list.html",
        {
            "queues": rows,
            "problem": problem,
            "can_change": can(request, "change_queuestate"),
            "environment_limit": get_settings().CONCURRENCY_LIMIT,
        },
    )


@dashboard_view("change_queuestate", methods=("POST",))
def queue_action(request: HttpRequest, name: str, action: str) -> HttpResponse:
    registry.ensure_discovered()
    if name not in registry.queues and action not in ("pause", "resume"):
        raise Http404(f"no queue {name} is declared in code")
    if action in ("pause", "resume"):
        try:  # a queue the code no longer declares, left paused or with runs, too
            (queues.pause if action == "pause" else queues.resume)(name)
        except ConfigurationError:
            raise Http404(f"no queue {name} is declared in code") from None
        messages.success(request, f"Queue {name} {action}d.")
    elif action == "reset":
        queues.reset_limit(name)
        messages.success(request, f"Queue {name} is back to the limit in code.")
    elif action == "override":
        text = request.POST.get("limit", "").strip()
        _override(request, name, text)
    else:
        raise Http404(f"no queue action {action}")
    return redirect("trigger_celery:queue-list")


def _override(request: HttpRequest, name: str, text: str) -> None:
    # At most 6 digits: a longer one is out of range, and int() refuses 4,300 or more.
    limit = int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else 0
    if not 1 <= limit <= MAX_QUEUE_LIMIT:
        messages.error(
            request,
            f"Not changed: the limit must be a whole number from 1 to {MAX_QUEUE_LIMIT}, got {text!r}.",
        )
        return
    try:
        queues.override_limit(name, limit)
    except (ValueError, ConfigurationError) as exc:  # above the queue's total_limit
        messages.error(request, f"Not changed: {exc}.")
    else:
        messages.success(request, f"Queue {name}: concurrency limit {limit} (overridden).")
