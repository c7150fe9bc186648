"""Django admin for schedules (SPEC 9): validated create/edit, fire times, actions.

Only ``schedules.task`` ids can be chosen; cron and time zone are validated by the same
rules as the API, so a mistake is a form error naming the value. Schedules declared in
code are shown read-only and cannot be deleted, activated or deactivated here.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from trigger_celery.admin_base import StorableLookupsAdmin
from trigger_celery.api.schedules import schedules
from trigger_celery.core import clock
from trigger_celery.core.cron import format_local
from trigger_celery.core.cron_words import describe
from trigger_celery.engine.schedules import disabled_here, upcoming
from trigger_celery.errors import (
    DeclarativeScheduleError,
    ScheduleNotFoundError,
)
from trigger_celery.forms import ScheduleForm
from trigger_celery.models import Schedule


@admin.register(Schedule)
class ScheduleAdmin(StorableLookupsAdmin):
    """Schedules with their local fire times; declared ones are view-only."""

    form = ScheduleForm
    list_display = (
        "id",
        "task_identifier",
        "cron",
        "description",
        "timezone",
        "active",
        "declarative",
        "next_fire",
        "has_problem",
    )
    list_filter = ("active", "declarative", "task_identifier", "timezone")
    search_fields = ("=id", "task_identifier", "external_id", "deduplication_key")
    # "delete_selected" replaces Django's action of that name (see the method).
    actions = ("activate_schedules", "deactivate_schedules", "delete_selected")
    list_per_page = 50
    show_full_result_count = False
    _shown = (
        "id",
        "declarative",
        "description",
        "upcoming_times",
        "last_tick_at",
        "next_tick_at",
        "problem_text",
        "runs_link",
    )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        editable = list(ScheduleForm.Meta.fields)
        if obj is None:
            return [(None, {"fields": editable})]
        main: dict[str, Any] = {"fields": editable}
        if obj.declarative:
            main["description"] = (
                "Declared in code (schedules.task with cron=): read-only here. "
                "Change or remove the cron= in the code and redeploy."
            )
        return [(None, main), ("Firing", {"fields": list(self._shown)})]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.declarative:
            return [*ScheduleForm.Meta.fields, *self._shown]
        return self._shown if obj is not None else ()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A declared schedule opens as a view-only page; a POST to it is refused (403).
        if obj is not None and obj.declarative:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.declarative:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        if obj.declarative:
            return  # declared in code: nothing here may change it (ScheduleForm planned it)
        super().save_model(request, obj, form, change)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        # delete_selected already leaves declared schedules out; this is the backstop.
        super().delete_queryset(request, queryset.filter(declarative=False))

    # -- shown values (escaped: every value may come from a user) ----------------------
    @admin.display(description="in words")
    def description(self, obj: Schedule) -> str:
        return describe(obj.cron)

    @admin.display(description="next fire")
    def next_fire(self, obj: Schedule) -> str:
        if not obj.active or obj.next_tick_at is None:
            return "-"
        # Limited to other environments: beat skips every tick here, none is "next".
        return disabled_here(obj) or format_local(obj.next_tick_at, obj.timezone)

    @admin.display(description="problem")
    def has_problem(self, obj: Schedule) -> str:
        if not obj.problem:
            return ""
        return format_html('<span title="{}">⚠ skipped</span>', obj.problem)

    @admin.display(description="next 5 fire times")
    def upcoming_times(self, obj: Schedule) -> str:
        if not obj.active:
            return "inactive"
        elsewhere = disabled_here(obj)
        if elsewhere:
            return elsewhere
        times = upcoming(obj, clock.now())
        if not times:
            return "-"
        return format_html(
            "<ol style='margin: 0; padding-left: 1.5em'>{}</ol>",
            format_html_join("", "<li>{}</li>", ((format_local(t, obj.timezone),) for t in times)),
        )

    @admin.display(description="problem")
    def problem_text(self, obj: Schedule) -> str:
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", obj.problem or "-")

    @admin.display(description="runs")
    def runs_link(self, obj: Schedule) -> str:
        url = reverse("admin:trigger_celery_run_changelist") + f"?schedule__id__exact={obj.id}"
        return format_html('<a href="{}">{} run(s)</a>', url, obj.runs.count())

    # -- actions -----------------------------------------------------------------------
    @admin.action(description="Activate selected schedules", permissions=["change"])
    def activate_schedules(self, request: HttpRequest, queryset: Any) -> None:
        self._switch(request, queryset, schedules.activate, "Activated")

    @admin.action(description="Deactivate selected schedules", permissions=["change"])
    def deactivate_schedules(self, request: HttpRequest, queryset: Any) -> None:
        self._switch(request, queryset, schedules.deactivate, "Deactivated")

    @admin.action(description="Delete selected schedules", permissions=["delete"])
    def delete_selected(self, request: HttpRequest, queryset: Any) -> Any:
        """Django's bulk delete (confirmation page included) of the imperative schedules
        selected; declared ones are left out with a warning instead of failing it all."""
        declared = queryset.filter(declarative=True).count()
        if declared:
            self.message_user(
                request,
                f"Skipped {declared} schedule(s) declared in code; remove their cron= in the "
                "code to delete them.",
                messages.WARNING,
            )
        imperative = queryset.filter(declarative=False)
        if not imperative.exists():
            return None
        return django_delete_selected(self, request, imperative)

    def _switch(self, request: HttpRequest, queryset: Any, action: Any, verb: str) -> None:
        declared = queryset.filter(declarative=True).count()
        done = 0
        for schedule_id in queryset.filter(declarative=False).values_list("id", flat=True):
            try:
                action(schedule_id)  # the API re-plans (activate) or clears next_tick_at
            except DeclarativeScheduleError:
                declared += 1  # turned declarative since the list was shown
                continue
            except ScheduleNotFoundError:
                continue  # deleted meanwhile
            done += 1
        self.message_user(request, f"{verb} {done} schedule(s).")
        if declared:
            self.message_user(
                request,
                f"Skipped {declared} schedule(s) declared in code; change them in code.",
                messages.WARNING,
            )
