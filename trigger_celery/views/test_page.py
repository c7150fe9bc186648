"""Test page: pick a task, edit a JSON payload and options, trigger it.

Nothing is triggered unless the payload fits the task's schema and every option is
valid; each problem is shown next to its field.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from pydantic import ValidationError

from trigger_celery.core.options import MACHINE_PRESETS, parse_trigger_options
from trigger_celery.engine.registry import TaskDefinition, registry
from trigger_celery.engine.triggering import trigger_task
from trigger_celery.errors import (
    ConfigurationError,
    InvalidTriggerOptionError,
    TriggerCeleryError,
)
from trigger_celery.models import Run
from trigger_celery.views.access import can, dashboard_view
from trigger_celery.views.run_actions import typed_delay, typed_duration_problem
from trigger_celery.views.values import pretty, shown_value

OPTION_FIELDS = (
    "delay",
    "ttl",
    "tags",
    "metadata",
    "queue",
    "concurrency_key",
    "idempotency_key",
    "machine",
    "max_attempts",
)


class JSONText(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 10, "cols": 70, "spellcheck": "false"})

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}") from None


class TestRunForm(forms.Form):
    payload = JSONText(required=False, help_text="JSON")
    delay = forms.CharField(required=False, help_text="30s, 5m, 2h or an ISO date")
    ttl = forms.CharField(required=False, help_text="10m, 1h or seconds")
    tags = forms.CharField(required=False, help_text="comma-separated")
    metadata = JSONText(required=False, help_text="a JSON object")
    queue = forms.CharField(required=False)
    concurrency_key = forms.CharField(required=False)
    idempotency_key = forms.CharField(required=False)
    machine = forms.ChoiceField(
        required=False, choices=[("", "task default"), *[(m, m) for m in MACHINE_PRESETS]]
    )
    max_attempts = forms.IntegerField(required=False, min_value=1)

    def __init__(self, *args: Any, definition: TaskDefinition, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.definition = definition
        self.options: dict[str, Any] = {}
        for field in ("metadata", "payload"):
            self.fields[field].widget = forms.Textarea(
                attrs={"rows": 10 if field == "payload" else 4, "cols": 70, "spellcheck": "false"}
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "payload" in data:
            try:
                self.definition.parse_payload(data["payload"])
            except (ValidationError, ValueError, TypeError) as exc:
                self.add_error("payload", f"does not fit the task's schema: {exc}")
        options: dict[str, Any] = {}
        for name in OPTION_FIELDS:
            value = data.get(name)
            if value in (None, ""):
                continue
            if name == "tags":
                value = [t.strip() for t in value.split(",") if t.strip()]
            elif name == "ttl" and value.isdigit():
                value = int(value)
            elif name == "delay":
                value = typed_delay(value)
            options[name] = value
        try:
            parse_trigger_options(options)
        except InvalidTriggerOptionError as exc:
            for field, message in exc.problems:
                if field in ("delay", "ttl"):  # in the form's terms, not the API's
                    message = typed_duration_problem(field, data[field]) or message
                self.add_error(field if field in self.fields else None, message)
        except ValueError as exc:
            self.add_error(None, str(exc))
        if options.get("queue"):
            try:
                registry.require_queue(options["queue"])
            except ConfigurationError as exc:
                self.add_error("queue", str(exc))
        self.options = options
        return data


def example_payload(definition: TaskDefinition, *, runs_visible: bool = True) -> Any:
    """The latest run's payload (for a user who may view runs), else an example built
    from the schema."""
    latest = (
        Run.objects.filter(task_identifier=definition.id)
        .only("payload", "payload_ref")
        .order_by("-id")
        .first()
        if runs_visible
        else None
    )
    if latest is not None and not definition.is_scheduled:
        shown = shown_value(latest.payload, latest.payload_ref, "payload")
        if shown.whole:  # else (too large to edit here, or unreadable): the example below
            return shown.value
    if definition.is_scheduled:
        now = timezone.now().replace(microsecond=0)
        return {
            "type": "IMPERATIVE",
            "timestamp": now.isoformat(),
            "last_timestamp": None,
            "timezone": "UTC",
            "schedule_id": "sched_dashboard_test",
            "upcoming": [],
        }
    schema = definition.json_schema() if definition.is_schema_task else None
    return _example(schema or {}, schema or {})


def _example(node: dict[str, Any], root: dict[str, Any], depth: int = 0) -> Any:
    if "default" in node:
        return node["default"]
    if "$ref" in node and depth < 5:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _example(root.get("$defs", {}).get(name, {}), root, depth + 1)
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        return {
            key: _example(value, root, depth + 1)
            for key, value in node.get("properties", {}).items()
        }
    return {"string": "", "integer": 0, "number": 0, "boolean": False, "array": []}.get(
        str(kind), {} if depth == 0 else None
    )


@dashboard_view("trigger_run", methods=("GET", "HEAD", "POST"))
def test_page(request: HttpRequest) -> HttpResponse:
    registry.ensure_discovered()
    task_id = request.POST.get("task") or request.GET.get("task") or ""
    definition = registry.tasks.get(task_id)
    form = None
    if definition is not None:
        # A run's payload is shown only to users who may view runs (SPEC 10).
        example = example_payload(definition, runs_visible=can(request, "view_run"))
        initial = {"payload": pretty(example)}
        if request.method == "POST":
            form = TestRunForm(request.POST, definition=definition)
            if form.is_valid():
                try:
                    handle = trigger_task(
                        task_id,
                        form.cleaned_data["payload"],
                        form.options,
                        {},
                        definition=definition,
                    )
                except (TriggerCeleryError, ValueError) as exc:
                    form.add_error(None, f"not triggered: {exc}")
                else:
                    if handle.is_cached:
                        messages.info(
                            request,
                            f"Nothing new was triggered: run {handle.id} already holds this "
                            "idempotency key.",
                        )
                    if can(request, "view_run"):
                        return redirect("trigger_celery:run-detail", handle.id)
                    # Its page would refuse this user: say so here, and stay.
                    if not handle.is_cached:
                        messages.success(request, f"Triggered run {handle.id}.")
                    return redirect(
                        f"{reverse('trigger_celery:test')}?{urlencode({'task': task_id})}"
                    )
        else:
            form = TestRunForm(initial=initial, definition=definition)
    status = 400 if request.method == "POST" and form is not None else 200
    if request.method == "POST" and definition is None:
        status = 400
    return render(
        request,
        "trigger_celery/test.html",
        {
            "tasks": sorted(registry.tasks),
            "task": task_id,
            "definition": definition,
            "unknown": bool(task_id) and definition is None,
            "form": form,
            "form_max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        },
        status=status,
    )
