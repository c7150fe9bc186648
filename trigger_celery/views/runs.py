"""Runs list (and the JSON it polls for live updates) and run detail (and its JSON)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from trigger_celery.core.decisions import shortened
from trigger_celery.core.pages import keyset_rows
from trigger_celery.core.routing import celery_queue_for
from trigger_celery.core.statuses import FINAL_STATUSES, RunStatus
from trigger_celery.engine.dispatch import default_celery_queue
from trigger_celery.models import Attempt, LogEntry, Run
from trigger_celery.views.access import can, dashboard_view
from trigger_celery.views.run_actions import draft_key
from trigger_celery.views.run_filters import LIST_FIELDS, RunFilters, duration_of, human_duration
from trigger_celery.views.run_filters import row_of as _row
from trigger_celery.views.timeline import Wait, timeline
from trigger_celery.views.values import pretty, shown_value

PAGE_SIZE = 50
FINAL = {s.value for s in FINAL_STATUSES}
LOG_LINES_SHOWN = 500  # a run page's log lines at most, loaded or added live
LOG_LINES_PER_POLL = 100
CHILDREN_SHOWN = 100  # on a run's page; the runs list filtered by parent has them all
# Characters of each attempt's traceback shown on its run's page (its start and its end,
# which names where the error was raised). A run may have 250 attempts, each storing up
# to 128 KB of traceback: the page stays a page.
ATTEMPT_STACK_SHOWN = 8 * 1024


def _page(request: HttpRequest) -> tuple[RunFilters, list[dict[str, Any]], str | None]:
    filters = RunFilters.from_query(request.GET)
    qs = filters.runs().only(*LIST_FIELDS).with_latest_attempt()
    try:
        rows, next_cursor = keyset_rows(
            qs, limit=PAGE_SIZE, after=request.GET.get("after"), id_prefix="run"
        )
    except ValueError as exc:  # not a page's cursor: refused like a filter
        filters.errors.append(str(exc))
        filters.refused = True
        return filters, [], None
    return filters, [_row(r) for r in rows], next_cursor


@dashboard_view("view_run")
def run_list(request: HttpRequest) -> HttpResponse:
    filters, rows, next_cursor = _page(request)
    return render(
        request,
        "trigger_celery/run_list.html",
        {
            "runs": rows,
            "statuses": list(RunStatus),
            "filters": filters,
            "query": filters.query_string(),
            "next_cursor": next_cursor,
            "first_page": not request.GET.get("after"),
            "can_cancel": can(request, "cancel_run"),
            "can_replay": can(request, "replay_run"),
            "live": {
                "url": reverse("trigger_celery:run-list-json") + "?" + filters.query_string(),
                "detail": reverse("trigger_celery:run-detail", args=["RUN_ID"]),
                "select": can(request, "cancel_run") or can(request, "replay_run"),
                # The next page starts after the last row shown: redrawn rows move it.
                "next": "?" + filters.query_string() + "&after=",
            },
        },
        status=400 if filters.refused else 200,
    )


@dashboard_view("view_run")
def run_list_json(request: HttpRequest) -> HttpResponse:
    """One page of the list, as the live list redraws it (never more than a page)."""
    filters, rows, next_cursor = _page(request)
    return JsonResponse(
        {"runs": rows, "next": next_cursor, "errors": filters.errors},
        status=400 if filters.refused else 200,
    )


def _get(run_id: str) -> Run:
    if "\x00" in run_id:  # no run has one, and the database cannot compare it
        raise Http404(f"no run {run_id!r}")
    try:
        return Run.objects.get(id=run_id)
    except Run.DoesNotExist:
        raise Http404(f"no run {run_id}") from None


def _log_row(line: LogEntry) -> dict[str, Any]:
    """A log line as the run page shows it, and as its JSON sends it to be added live."""
    return {
        "id": line.id,
        "time": timezone.localtime(line.created_at).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "attempt": line.attempt_number,
        "level": line.level,
        "message": line.message,
        "attributes": json.dumps(line.attributes, ensure_ascii=False),
    }


def _attempt_row(attempt: Attempt) -> dict[str, Any]:
    """An attempt as the run page's table shows it: its error and, folded, its traceback."""
    error = attempt.error if isinstance(attempt.error, dict) else {}
    return {
        "number": attempt.number,
        "status": attempt.status,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "worker": attempt.worker,
        "error_type": str(error.get("type") or ""),
        "error_message": str(error.get("message") or ""),
        "stack": shortened(str(error.get("stack") or ""), ATTEMPT_STACK_SHOWN),
    }


def _waits(run: Run) -> list[Wait]:
    rows = run.waitpoints.values_list("label", "created_at", "completed_at", "resume_at")
    return [
        Wait(label, start, end, (resume - start).total_seconds() if resume else None)
        for label, start, end, resume in rows[:200]
    ]


@dashboard_view("view_run")
def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    run = _get(run_id)
    attempts = list(run.attempts.all())
    run.latest_attempt = max((a.number for a in attempts), default=None)  # attempts_begun
    payload = shown_value(run.payload, run.payload_ref, "payload")
    output = shown_value(run.output, run.output_ref, "output")
    final = run.status in FINAL
    related = Run.objects.only("id", "task_identifier", "status")
    logs = [_log_row(line) for line in run.logs.order_by("id")[:LOG_LINES_SHOWN]]
    children = list(related.filter(parent_id=run.id).order_by("id")[: CHILDREN_SHOWN + 1])
    return render(
        request,
        "trigger_celery/run_detail.html",
        {
            "run": run,
            "duration": human_duration(duration_of(run)),
            "payload": payload,
            "output": output,
            "error": run.error,
            "attempts": [_attempt_row(a) for a in attempts],
            "timeline": timeline(run, attempts, timezone.now(), _waits(run)),
            "logs": logs,
            "metadata": pretty(run.metadata),
            "parent": related.filter(id=run.parent_id).first() if run.parent_id else None,
            "root": related.filter(id=run.root_id).first()
            if run.root_id and run.root_id != run.parent_id
            else None,
            "children": children[:CHILDREN_SHOWN],
            "more_children": len(children) > CHILDREN_SHOWN,
            "replays": related.filter(replayed_from_id=run.id).order_by("-id")[:20],
            "final": final,
            "show_cancel": not final and can(request, "cancel_run"),
            "show_replay": can(request, "replay_run"),
            "form_max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
            # What a refused replay was given, to edit again (the box opens with it).
            "replay_draft": request.session.pop(draft_key(run.id), "")
            if hasattr(request, "session")
            else "",
            "show_reschedule": run.status == RunStatus.DELAYED and can(request, "change_run"),
            # A DEQUEUED run waits for a worker that consumes its Celery queue.
            "sent_to": celery_queue_for(run.machine, run.region, default_celery_queue())
            if run.status == RunStatus.DEQUEUED
            else None,
            "live": {
                "url": request.path + "json/",
                "status": run.status,
                "final": final,
                # An attempt that ends (a retry, a wait) changes the attempts table and the
                # timeline: the page reloads to show them, as it does when the run ends.
                "attempts_ended": sum(1 for a in attempts if a.finished_at is not None),
                # New log lines are asked for after the last one shown, up to the cap.
                "logs_after": logs[-1]["id"] if logs else 0,
                "logs_room": LOG_LINES_SHOWN - len(logs),
            },
        },
    )


@dashboard_view("view_run")
def run_detail_json(request: HttpRequest, run_id: str) -> HttpResponse:
    """What changes while a run executes: status, attempts, tags, metadata, and with
    ``?logs_after=<id>`` the log lines written after that one (a page of them)."""
    after = request.GET.get("logs_after")
    if after is not None and not (after.isascii() and after.isdigit() and len(after) <= 18):
        return JsonResponse(
            {"errors": [f"logs_after: {after!r} is not a log line id (a whole number)"]},
            status=400,
        )
    run = _get(run_id)
    body: dict[str, Any] = {
        "id": run.id,
        "status": run.status,
        "final": run.status in FINAL,
        "attempts": run.attempts_begun,
        "duration": human_duration(duration_of(run)),
        "tags": list(run.tags or []),
        "metadata": pretty(run.metadata),
        "attempts_ended": run.attempts.filter(finished_at__isnull=False).count(),
    }
    if after is not None:
        lines = run.logs.filter(id__gt=int(after)).order_by("id")[:LOG_LINES_PER_POLL]
        body["logs"] = [_log_row(line) for line in lines]
    return JsonResponse(body)
