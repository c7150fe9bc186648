"""Runs list and run detail pages."""

from __future__ import annotations

import json

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from trigger_celery.core.pages import keyset_rows
from trigger_celery.core.statuses import RunStatus
from trigger_celery.engine.payloads import load_payload
from trigger_celery.models import Run

PAGE_SIZE = 50


@staff_member_required
def run_list(request: HttpRequest) -> HttpResponse:
    qs = Run.objects.only(
        "id",
        "task_identifier",
        "status",
        "created_at",
        "started_at",
        "finished_at",
        "attempt_count",
        "queue",
    )
    status = request.GET.get("status") or ""
    task_id = request.GET.get("task") or ""
    if status in RunStatus.__members__:
        qs = qs.filter(status=status)
    if task_id:
        qs = qs.filter(task_identifier=task_id)
    rows, next_cursor = keyset_rows(qs, limit=PAGE_SIZE, after=request.GET.get("after"))
    return render(
        request,
        "trigger_celery/run_list.html",
        {
            "runs": rows,
            "statuses": list(RunStatus),
            "status": status,
            "task": task_id,
            "next_cursor": next_cursor,
        },
    )


@staff_member_required
def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    try:
        run = Run.objects.get(id=run_id)
    except Run.DoesNotExist:
        raise Http404(f"no run {run_id}") from None

    def pretty(value: object) -> str:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)

    return render(
        request,
        "trigger_celery/run_detail.html",
        {
            "run": run,
            "payload": pretty(load_payload(run.payload, run.payload_ref)),
            "output": pretty(load_payload(run.output, run.output_ref)),
            "error": run.error,
            "attempts": run.attempts.all(),
            "logs": run.logs.all()[:500],
            "metadata": pretty(run.metadata),
            "children": run.children.only("id", "task_identifier", "status")[:100],
        },
    )
