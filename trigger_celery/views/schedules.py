"""Schedules pages: list, create, detail/edit with next fire times, and actions.

Every page is staff-only; every change is a POST (CSRF-protected by Django's middleware)
checked against the model permissions ``add_schedule``, ``change_schedule`` and
``delete_schedule``. Schedules declared in code are shown read-only.
"""

from __future__ import annotations

import copy

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from trigger_celery.api.schedules import schedules
from trigger_celery.conf import get_settings
from trigger_celery.core import clock
from trigger_celery.core.cron import format_local
from trigger_celery.core.cron_words import describe
from trigger_celery.core.pages import keyset_rows
from trigger_celery.engine.schedules import disabled_here, upcoming
from trigger_celery.forms import ScheduleForm
from trigger_celery.models import Run, Schedule
from trigger_celery.views.access import dashboard_view, require

PAGE_SIZE = 50


def _require(request: HttpRequest, action: str) -> None:
    require(request, f"{action}_schedule")


def _elsewhere(schedule: Schedule) -> str:
    """Why ``schedule`` has no fire times on this environment's pages ("" if it has)."""
    if disabled_here(schedule) is None:
        return ""
    return f"not in {get_settings().ENVIRONMENT} (only in {', '.join(schedule.environments)})"


def _get(schedule_id: str) -> Schedule:
    if "\x00" in schedule_id:  # no schedule has one, and the database cannot compare it
        raise Http404(f"no schedule {schedule_id!r}")
    try:
        return Schedule.objects.get(id=schedule_id)
    except Schedule.DoesNotExist:
        raise Http404(f"no schedule {schedule_id}") from None


@dashboard_view("view_schedule")
def schedule_list(request: HttpRequest) -> HttpResponse:
    _require(request, "view")
    qs = Schedule.objects.all()
    task_id = request.GET.get("task") or ""
    after = request.GET.get("after") or ""
    # A value no schedule has, that the database cannot even compare: a 400 naming it.
    errors = [
        f"{name}: {value!r} contains a NUL character"
        for name, value in (("task", task_id), ("after", after))
        if "\x00" in value
    ]
    if task_id:
        qs = qs.filter(task_identifier=task_id)
    rows, next_cursor = (
        ([], None)
        if errors
        else keyset_rows(qs, limit=PAGE_SIZE, after=after or None, descending=False)
    )
    shown = [
        {
            "row": row,
            "description": describe(row.cron),
            "elsewhere": _elsewhere(row),
            "next": format_local(row.next_tick_at, row.timezone)
            if row.active and row.next_tick_at
            else "",
        }
        for row in rows
    ]
    return render(
        request,
        "trigger_celery/schedule_list.html",
        {
            "schedules": shown,
            "task": task_id,
            "errors": errors,
            "next_cursor": next_cursor,
            "can_add": request.user.has_perm("trigger_celery.add_schedule"),
        },
        status=400 if errors else 200,
    )


@dashboard_view("add_schedule", methods=("GET", "HEAD", "POST"))
def schedule_new(request: HttpRequest) -> HttpResponse:
    _require(request, "add")
    form = ScheduleForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        schedule = form.save()
        messages.success(request, f"Schedule {schedule.id} created.")
        return redirect("trigger_celery:schedule-detail", schedule.id)
    return render(request, "trigger_celery/schedule_form.html", {"form": form})


@dashboard_view("view_schedule", methods=("GET", "HEAD", "POST"))
def schedule_detail(request: HttpRequest, schedule_id: str) -> HttpResponse:
    _require(request, "view")
    schedule = _get(schedule_id)
    can_change = request.user.has_perm("trigger_celery.change_schedule") and not (
        schedule.declarative
    )
    form = None
    if can_change:
        # The form gets a copy: validating a POST sets its good fields on the instance,
        # and the page around a refused form must show the schedule as it is saved.
        form = ScheduleForm(request.POST or None, instance=copy.copy(schedule))
        if request.method == "POST" and form.is_valid():
            form.save()
            messages.success(request, "Schedule saved.")
            return redirect("trigger_celery:schedule-detail", schedule.id)
    elif request.method == "POST":
        if schedule.declarative:
            raise PermissionDenied("this schedule is declared in code; change it there")
        _require(request, "change")
    # Beat skips every tick of a schedule limited to other environments: no times to show.
    fires_here = schedule.active and disabled_here(schedule) is None
    now = clock.now()
    fire_times = (
        [format_local(t, schedule.timezone) for t in upcoming(schedule, now)] if fires_here else []
    )
    return render(
        request,
        "trigger_celery/schedule_detail.html",
        {
            "schedule": schedule,
            "description": describe(schedule.cron),
            "fire_times": fire_times,
            "environment": get_settings().ENVIRONMENT,
            "fires_here": disabled_here(schedule) is None,
            "form": form,
            "runs": Run.objects.filter(schedule_id=schedule.id)
            .only("id", "status", "schedule_tick_at", "created_at")
            .order_by("-id")[:20],
            "can_delete": request.user.has_perm("trigger_celery.delete_schedule")
            and not schedule.declarative,
        },
    )


_ACTIONS = {
    "activate": ("change", schedules.activate, "activated"),
    "deactivate": ("change", schedules.deactivate, "deactivated"),
    "delete": ("delete", schedules.delete, "deleted"),
}


@dashboard_view(None, methods=("POST",))
def schedule_action(request: HttpRequest, schedule_id: str, action: str) -> HttpResponse:
    if action not in _ACTIONS:
        raise Http404(f"no action {action}")
    permission, call, done = _ACTIONS[action]
    _require(request, permission)
    schedule = _get(schedule_id)
    if schedule.declarative:
        raise PermissionDenied("this schedule is declared in code; change it there")
    call(schedule.id)
    messages.success(request, f"Schedule {schedule.id} {done}.")
    if action == "delete":
        return redirect("trigger_celery:schedule-list")
    return redirect("trigger_celery:schedule-detail", schedule.id)
