"""Bulk cancel / replay: a confirmation that states the count, then progress."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.request import QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse

from trigger_celery import bulk
from trigger_celery.models import BulkAction
from trigger_celery.views.access import dashboard_view, require
from trigger_celery.views.run_filters import RunFilters

MAX_SELECTED = 1000
PERMISSION = {"cancel": "cancel_run", "replay": "replay_run"}


@dashboard_view("view_run", methods=("GET", "HEAD", "POST"))
def bulk_new(request: HttpRequest) -> HttpResponse:
    """GET: what would be affected and how many; POST: do it."""
    data = request.POST if request.method == "POST" else request.GET
    action = data.get("action", "")
    if action not in PERMISSION:
        return HttpResponse(  # plain text: the value is the request's, never markup
            f"unknown bulk action {action!r}; use cancel or replay",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    require(request, PERMISSION[action])
    filters = RunFilters.from_query(QueryDict(data.get("filter", "")))
    everything = data.get("scope") == "filter"
    run_ids = [] if everything else data.getlist("run")[:MAX_SELECTED]
    if not everything and not run_ids:
        return render(
            request,
            "trigger_celery/bulk_confirm.html",
            {"problem": "Select some runs, or tick “everything this filter matches”."},
            status=400,
        )
    refused = [f"run: {r!r} contains a NUL character" for r in run_ids if "\x00" in r]
    if refused:  # no run has one, and the database cannot compare it
        return render(
            request, "trigger_celery/bulk_confirm.html", {"problem": "; ".join(refused)}, status=400
        )
    if everything and filters.errors:
        return render(
            request,
            "trigger_celery/bulk_confirm.html",
            {"problem": "; ".join(filters.errors)},
            status=400 if filters.refused else 200,
        )
    preview = BulkAction(action=action, run_ids=run_ids, filters=filters.as_dict())
    count = bulk.matching(preview).count()
    finished = bulk.selected(preview).count() - count if action == "cancel" else 0
    if action == "cancel" and not count:
        return render(
            request,
            "trigger_celery/bulk_confirm.html",
            {"problem": _nothing_to_cancel(finished)},
        )
    if request.method == "POST":
        row = bulk.create(
            action,
            run_ids=run_ids,
            filters=filters.as_dict() if everything else {},
            user=request.user.get_username(),
        )
        return redirect("trigger_celery:bulk-detail", row.pk)
    return render(
        request,
        "trigger_celery/bulk_confirm.html",
        {
            "action": action,
            "count": count,
            "finished": finished,
            "everything": everything,
            "filters": filters,
            "filter_query": data.get("filter", ""),
            "run_ids": run_ids,
        },
    )


def _nothing_to_cancel(finished: int) -> str:
    if not finished:
        return "Nothing to cancel: no run matches."
    runs = "run has" if finished == 1 else f"{finished} runs have"
    return f"Nothing to cancel: the {runs} already finished."


def _get(pk: int) -> BulkAction:
    row = BulkAction.objects.filter(pk=pk).first()
    if row is None:
        raise Http404(f"no bulk action {pk}")
    return row


@dashboard_view("view_run")
def bulk_detail(request: HttpRequest, pk: int) -> HttpResponse:
    row = _get(pk)
    bulk.resume_if_stale(row)
    return render(
        request,
        "trigger_celery/bulk_detail.html",
        {
            "row": row,
            "skipped": bulk.skipped(row),
            "live": {
                "url": reverse("trigger_celery:bulk-json", args=[row.pk]),
                "finished": row.finished_at is not None,
            },
        },
    )


@dashboard_view("view_run")
def bulk_json(request: HttpRequest, pk: int) -> HttpResponse:
    row = _get(pk)
    bulk.resume_if_stale(row)
    return JsonResponse(
        {
            "id": row.pk,
            "action": row.action,
            "total": row.total,
            "done": row.done,
            "failed": row.failed,
            "skipped": bulk.skipped(row),
            "finished": row.finished_at is not None,
        }
    )
