"""Forms: the schedule form shared by Django admin and the dashboard."""

from __future__ import annotations

from typing import Any

from django import forms

from trigger_celery.api.schedules import scheduled_task_ids
from trigger_celery.core import clock
from trigger_celery.core.cron import get_zone, parse_cron, timezone_names
from trigger_celery.core.environments import ENVIRONMENTS
from trigger_celery.core.ids import new_id
from trigger_celery.core.schedules import DECLARATIVE_KEY_PREFIX
from trigger_celery.engine.schedules import plan
from trigger_celery.errors import InvalidScheduleError
from trigger_celery.models import Schedule


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
            "deduplication_key": "Optional and unique: schedules.create with the same key "
            "updates this schedule. Left empty, the schedule's id is its key, so each "
            "schedule made without one is a schedule of its own.",
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
        if "deduplication_key" in self.fields:
            self.fields["deduplication_key"].required = False
        # Kept exactly, as the API keeps them: a stripped key would no longer be the one
        # schedules.create names (it would make a second schedule), nor the external id
        # the payload carries.
        for name in ("deduplication_key", "external_id"):
            if name in self.fields:
                self.fields[name].strip = False  # type: ignore[attr-defined]

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
        value = str(self.cleaned_data["deduplication_key"] or "")
        if not value.strip():
            # As Trigger.dev's dashboard does without a key: a schedule of its own. Its id
            # is a key no other schedule holds, and one schedules.create can still name.
            if not self.instance.id:
                self.instance.id = new_id("sched")
            return str(self.instance.id)
        if value.startswith(DECLARATIVE_KEY_PREFIX):
            raise forms.ValidationError(
                f"Keys starting with {DECLARATIVE_KEY_PREFIX!r} are reserved for schedules "
                "declared in code."
            )
        holder = (
            Schedule.objects.filter(deduplication_key=value)
            .exclude(pk=self.instance.pk)
            .values_list("id", flat=True)
            .first()
        )
        if holder is not None:  # Django's own message would not name the key
            raise forms.ValidationError(
                f"deduplication key {value!r} is already schedule {holder}'s; "
                "choose another, or edit that schedule"
            )
        return value

    def save(self, commit: bool = True) -> Schedule:
        """Give a new schedule its id and (re)plan its next tick when that can change."""
        schedule: Schedule = super().save(commit=False)
        adding = schedule._state.adding
        if adding and not schedule.id:
            schedule.id = new_id("sched")
        if not schedule.active:
            schedule.next_tick_at = None
            schedule.problem = ""  # planned afresh when activated again, even in SQL
        elif (
            adding
            or schedule.next_tick_at is None
            or {"cron", "timezone", "active", "task_identifier"} & set(self.changed_data)
        ):
            plan(schedule, clock.now())
        if commit:
            schedule.save()
        return schedule
