"""Django admin for schedules (SPEC 9): validated create/edit, fire times, actions.

Only ``schedules.task`` ids can be chosen; cron and time zone are validated by the same
rules as the API, so a mistake is a form error naming the value. Schedules declared in
code are shown read-only and cannot be deleted, activated or deactivated here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from trigger_celery import dispatch
from trigger_celery.client.schedules import scheduled_task_ids, schedules
from trigger_celery.core.cron import describe, get_zone, parse_cron, timezone_names
from trigger_celery.core.environments import ENVIRONMENTS
from trigger_celery.core.ids import new_id
from trigger_celery.core.schedules import DECLARATIVE_KEY_PREFIX
from trigger_celery.errors import (
    DeclarativeScheduleError,
    InvalidScheduleError,
    ScheduleNotFoundError,
)
from trigger_celery.models import Schedule
from trigger_celery.schedule_engine import plan, upcoming


class ScheduleForm(forms.ModelForm):
    """Add/change form: allow-listed task, cron and time zone checked like the API."""

    task_identifier = forms.ChoiceField(
        label="Task", help_text="Only tasks defined with schedules.task can be scheduled."
    )
    timezone = forms.ChoiceField(initial="UTC", help_text="IANA name; DST is followed.")
    environments = forms.MultipleChoiceField(
        choices=[(e, e) for e in ENVIRONMENTS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Where this schedule fires; none ticked means every environment.",
    )

    class Meta:
        model = Schedule
        fields = (
            "task_identifier",
            "cron",
            "timezone",
            "environments",
            "external_id",
            "deduplication_key",
            "active",
        )
        help_texts = {
            "cron": "5 fields: minute hour day-of-month month day-of-week. "
            "L = last day of the month, 1L-7L = last Monday-Sunday, 0 or 7 = Sunday.",
            "deduplication_key": "Unique; schedules.create with the same key updates this one.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "task_identifier" in self.fields:  # absent when shown read-only
            choices = [(t, t) for t in scheduled_task_ids()]
            current = self.instance.task_identifier if self.instance.pk else None
            if current and current not in dict(choices):
                choices.append((current, f"{current} (not a schedules.task in this code)"))
            self.fields["task_identifier"].choices = [("", "---------"), *choices]  # type: ignore[attr-defined]
        if "timezone" in self.fields:
            self.fields["timezone"].choices = [(z, z) for z in timezone_names()]  # type: ignore[attr-defined]

    def clean_task_identifier(self) -> str:
        value = self.cleaned_data["task_identifier"]
        if value not in scheduled_task_ids():
            raise forms.ValidationError(f"{value!r} is not a schedules.task.")
        return str(value)

    def clean_cron(self) -> str:
        try:
            return parse_cron(self.cleaned_data["cron"]).text
        except InvalidScheduleError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_timezone(self) -> str:
        value = self.cleaned_data["timezone"]
        try:
            get_zone(value)
        except InvalidScheduleError as exc:
            raise forms.ValidationError(str(exc)) from None
        return str(value)

    def clean_environments(self) -> list[str]:
        return sorted(set(self.cleaned_data.get("environments") or []))

    def clean_deduplication_key(self) -> str:
        value = str(self.cleaned_data["deduplication_key"]).strip()
        if not value:
            raise forms.ValidationError("A deduplication key is required.")
        if value.startswith(DECLARATIVE_KEY_PREFIX):
            raise forms.ValidationError(
                f"Keys starting with {DECLARATIVE_KEY_PREFIX!r} are reserved for schedules "
                "declared in code."
            )
        return value


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
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
            return  # declared in code: nothing here may change it
        if not obj.pk:
            obj.id = new_id("sched")
        if not obj.active:
            obj.next_tick_at = None
        elif (
            not change
            or obj.next_tick_at is None
            or {"cron", "timezone", "active", "task_identifier"} & set(form.changed_data)
        ):
            plan(obj, dispatch.now_utc())
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
        return _local(obj.next_tick_at, obj.timezone)

    @admin.display(description="problem")
    def has_problem(self, obj: Schedule) -> str:
        if not obj.problem:
            return ""
        return format_html('<span title="{}">⚠ skipped</span>', obj.problem)

    @admin.display(description="next 5 fire times")
    def upcoming_times(self, obj: Schedule) -> str:
        if not obj.active:
            return "inactive"
        times = upcoming(obj, dispatch.now_utc())
        if not times:
            return "-"
        return format_html(
            "<ol style='margin: 0; padding-left: 1.5em'>{}</ol>",
            format_html_join("", "<li>{}</li>", ((_local(t, obj.timezone),) for t in times)),
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


def _local(value: datetime, zone_name: str) -> str:
    """``value`` as wall time of ``zone_name``: ``2025-03-10 00:00 EDT (-04:00)``."""
    try:
        zone = get_zone(zone_name)
    except InvalidScheduleError:
        return value.isoformat()
    local = value.astimezone(zone)
    offset = local.strftime("%z")  # "-0400"; Python 3.11 has no "%:z"
    return f"{local:%Y-%m-%d %H:%M %Z} ({offset[:3]}:{offset[3:5]})"
