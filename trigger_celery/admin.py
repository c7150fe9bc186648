"""Django admin: runs are read-only records; every value from a payload is escaped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext

from trigger_celery import schedule_admin  # noqa: F401  (registers ScheduleAdmin)
from trigger_celery.admin_base import StorableLookupsAdmin
from trigger_celery.admin_lists import CappedCountPaginator, TagFilter, TaskFilter
from trigger_celery.api.queues import queues
from trigger_celery.coordination.factory import get_store
from trigger_celery.core.idempotency import hash_key
from trigger_celery.engine.actions import cancel_run, replay_run
from trigger_celery.engine.registry import registry
from trigger_celery.models import Attempt, Batch, LogEntry, QueueState, Run
from trigger_celery.views.values import Shown, pretty, shown_value

log = logging.getLogger("trigger_celery.admin")


def _shown(shown: Shown) -> str:
    """A value as the dashboard shows it: its start when large, a note when unreadable."""
    if shown.whole:
        return _pretty(shown.value)
    return format_html(
        '<p>{}</p><pre style="white-space: pre-wrap; margin: 0">{}</pre>', shown.note, shown.text
    )


def _pretty(value: Any) -> str:
    # format_html escapes the JSON text: payloads are user data, never markup.
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
        pretty(value),
    )


class ReadOnlyAdmin(StorableLookupsAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AttemptInline(ReadOnlyInline):
    model = Attempt
    fields = ("number", "status", "started_at", "finished_at", "worker", "error_summary")
    readonly_fields = fields

    @admin.display(description="error")
    def error_summary(self, obj: Attempt) -> str:
        if not obj.error:
            return ""
        return f"{obj.error.get('type', '')}: {obj.error.get('message', '')}"


class LogEntryInline(ReadOnlyInline):
    model = LogEntry
    fields = ("created_at", "attempt_number", "level", "message", "attributes")
    readonly_fields = fields
    max_num = 0

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).order_by("id")


# What the run list shows and loads: payload, output, metadata and error can be large and
# are only for the change page.
RUN_LIST_FIELDS = ("id", "task_identifier", "status", "attempts", "queue")
RUN_LIST_LOADS = (
    *(f for f in RUN_LIST_FIELDS if f != "attempts"),
    *("attempt_count", "started_at", "created_at", "finished_at"),
)


class RunChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        runs = super().get_queryset(request, *args, **kwargs).only(*RUN_LIST_LOADS)
        return runs.with_latest_attempt()


def _stamp(moment: Any) -> str:
    if moment is None:
        return "-"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    # The columns are cheap per row, because a page has 50 of them: the id links to the
    # change page through a URL made once per page (Django's own link reverses and
    # resolves URLs for each row), times are formatted without the locale machinery, and
    # the action checkbox is written out rather than rendered through a form template.
    list_display = (*RUN_LIST_FIELDS, "created", "finished")
    list_display_links = None
    # No filter here needs a DISTINCT over the table: statuses are the model's choices,
    # tasks come from the registry, tags from the newest rows; dates are fixed ranges
    # (no date_hierarchy: its DISTINCT date_trunc scans the whole table).
    list_filter = ("status", TaskFilter, TagFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id", "task_identifier", "=idempotency_key")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a COUNT per filter choice scans the table
    paginator = CappedCountPaginator
    list_per_page = 50
    actions = ("cancel_runs", "replay_runs")
    inlines = (AttemptInline, LogEntryInline)

    def get_search_results(self, request: Any, queryset: Any, search_term: str) -> Any:
        """Also the idempotency key as a trigger was given it: it is stored hashed."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        try:
            hashed = hash_key(term) if term else None
        except ValueError:
            hashed = None
        if hashed is not None:
            found = found | queryset.filter(idempotency_key=hashed)
        return found, may_have_duplicates

    fieldsets = (
        (None, {"fields": ("id", "task_identifier", "status", "environment", "error_view")}),
        ("Data", {"fields": ("payload_view", "output_view", "metadata_view", "tags")}),
        (
            "Options",
            {
                "fields": (
                    "queue",
                    "concurrency_key",
                    "priority",
                    "machine",
                    "region",
                    "max_attempts",
                    "max_duration",
                    "ttl",
                    "idempotency_key",
                )
            },
        ),
        (
            "Lineage",
            {"fields": ("parent", "root", "depth", "batch", "schedule", "replayed_from")},
        ),
        (
            "Times",
            {
                "fields": (
                    "created_at",
                    "delayed_until",
                    "queued_at",
                    "available_at",
                    "started_at",
                    "finished_at",
                    "expired_at",
                )
            },
        ),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f for _, opts in self.fieldsets for f in opts["fields"]]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return RunChangeList

    def get_list_display(self, request: HttpRequest) -> tuple[Any, ...]:
        # One link column per request: the admin asks for the list more than once (the
        # columns, which are sortable) and compares the columns by identity.
        link = getattr(request, "_trigger_celery_run_link", None)
        if link is None:
            link = self._id_link(request)
            request._trigger_celery_run_link = link  # type: ignore[attr-defined]
        return (link, *RUN_LIST_FIELDS[1:], "created", "finished")

    def _id_link(self, request: HttpRequest) -> Callable[[Run], SafeString]:
        opts = self.opts
        placeholder = "__run__"
        url = reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
            args=[placeholder],
        )
        before, after = url.split(placeholder)
        preserved = self.get_preserved_filters(request)
        if preserved:
            after += "?" + preserved

        @admin.display(description="id", ordering="id")
        def id(run: Run) -> SafeString:  # named so its cells keep the class field-id
            return format_html('<a href="{}{}{}">{}</a>', before, quote(run.pk), after, run.pk)

        return id

    def action_checkbox(self, obj: Run) -> SafeString:
        label = gettext("Select this object for an action - {}")
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            obj.pk,
            format_html(label, str(obj)),
        )

    @admin.display(description="attempt count", ordering="attempt_count")
    def attempts(self, obj: Run) -> int:
        return obj.attempts_begun

    @admin.display(description="created at", ordering="created_at")
    def created(self, obj: Run) -> str:
        return _stamp(obj.created_at)

    @admin.display(description="finished at", ordering="finished_at")
    def finished(self, obj: Run) -> str:
        return _stamp(obj.finished_at)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("trigger_celery.cancel_run"))

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("trigger_celery.replay_run"))

    def _too_many(self, request: HttpRequest, queryset: Any, verb: str, done: str) -> bool:
        """More runs than the list counts ("Select all 1001 runs" may be 100,000): done
        one by one in this request, they outlast any proxy's timeout. The dashboard's
        bulk actions work them off in the background, with progress."""
        cap = CappedCountPaginator.COUNT_CAP
        if queryset.order_by()[: cap + 1].count() <= cap:
            return False
        self.message_user(
            request,
            f"Not {done}: the selection holds more than {cap:,} runs. Select fewer, or "
            f"{verb} them from the dashboard's runs list (its bulk actions work in the "
            "background and show their progress).",
            level=messages.ERROR,
        )
        return True

    @admin.action(description="Cancel selected runs", permissions=["cancel"])
    def cancel_runs(self, request: HttpRequest, queryset: Any) -> None:
        if self._too_many(request, queryset, "cancel", "canceled"):
            return
        canceled = sum(cancel_run(run_id) for run_id in queryset.values_list("id", flat=True))
        self.message_user(request, f"Canceled {canceled} run(s); finished ones are unchanged.")

    @admin.action(description="Replay selected runs", permissions=["replay"])
    def replay_runs(self, request: HttpRequest, queryset: Any) -> None:
        if self._too_many(request, queryset, "replay", "replayed"):
            return
        new, refused = [], []
        for run_id in queryset.values_list("id", flat=True):
            try:  # one run that cannot be replayed (its stored payload unreadable...)
                new.append(replay_run(run_id, {}).id)  # leaves the others replayed
            except Exception as exc:
                log.warning("admin replay of %s failed", run_id, exc_info=True)
                refused.append(f"{run_id} ({type(exc).__name__}: {exc})")
        if new:
            self.message_user(request, f"Replayed {len(new)} run(s): {', '.join(new[:10])}")
        if refused:
            said = f"Not replayed, {len(refused)} run(s): {'; '.join(refused[:10])}"
            self.message_user(request, said, level=messages.ERROR)

    @admin.display(description="payload")
    def payload_view(self, obj: Run) -> str:
        return _shown(shown_value(obj.payload, obj.payload_ref, "payload"))

    @admin.display(description="output")
    def output_view(self, obj: Run) -> str:
        return _shown(shown_value(obj.output, obj.output_ref, "output"))

    @admin.display(description="metadata")
    def metadata_view(self, obj: Run) -> str:
        return _pretty(obj.metadata)

    @admin.display(description="error")
    def error_view(self, obj: Run) -> str:
        if not obj.error:
            return "-"
        return format_html(
            "<strong>{}</strong>: {}<pre style='white-space: pre-wrap'>{}</pre>",
            obj.error.get("type", ""),
            obj.error.get("message", ""),
            obj.error.get("stack", ""),
        )


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyAdmin):
    list_display = ("run", "number", "status", "started_at", "finished_at", "worker")
    list_filter = ("status",)
    search_fields = ("=run__id",)
    show_full_result_count = False


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "task_identifier", "run_count", "created_at")
    search_fields = ("=id",)
    show_full_result_count = False


@admin.register(QueueState)
class QueueAdmin(StorableLookupsAdmin):
    """Queues declared in code, their live counts, and pause/resume (change permission)."""

    list_display = ("name", "paused", "limit", "executing", "queued")
    actions = ("pause_queues", "resume_queues")
    search_fields = ("name",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The override is changed on the dashboard's queues page, which pushes it to the store.
        return ("name", "paused", "limit", "executing", "queued", "concurrency_limit_override")

    # One ModelAdmin serves every request: live counts are kept per request thread.
    _live = threading.local()

    def get_queryset(self, request: HttpRequest) -> Any:
        # Queues declared in code only: a row a removed queue left behind is not offered
        # (pausing it would name a queue the code no longer has).
        registry.ensure_discovered()
        return super().get_queryset(request).filter(name__in=list(registry.queues))

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        registry.ensure_discovered()
        QueueState.objects.bulk_create(
            [QueueState(name=name) for name in registry.queues], ignore_conflicts=True
        )
        stats: dict[str, tuple[int, int]] = {}
        try:
            for row in get_store().stats():
                queued, executing = stats.get(row.queue, (0, 0))
                stats[row.queue] = (queued + row.queued, executing + row.executing)
        except Exception:  # the store is down: show the rows without live counts
            stats = {}
        self._live.stats = stats
        return super().changelist_view(request, extra_context)

    @admin.display(description="concurrency limit")
    def limit(self, obj: QueueState) -> str:
        q = registry.queues.get(obj.name)
        if obj.concurrency_limit_override is not None:
            shown = [f"{obj.concurrency_limit_override} (overridden)"]
        else:
            shown = ["-" if q is None or q.concurrency_limit is None else str(q.concurrency_limit)]
        if q is not None and q.total_limit is not None:
            shown.append(f"{q.total_limit} over all keys")
        if q is not None and q.rate_limit:
            shown.append(f"rate {q.rate_limit}")
        return "; ".join(shown)

    @admin.display(description="executing")
    def executing(self, obj: QueueState) -> int:
        return getattr(self._live, "stats", {}).get(obj.name, (0, 0))[1]

    @admin.display(description="queued")
    def queued(self, obj: QueueState) -> int:
        return getattr(self._live, "stats", {}).get(obj.name, (0, 0))[0]

    @admin.action(description="Pause selected queues", permissions=["change"])
    def pause_queues(self, request: HttpRequest, queryset: Any) -> None:
        for state in queryset:
            queues.pause(state.name)
        self.message_user(request, f"Paused {queryset.count()} queue(s).")

    @admin.action(description="Resume selected queues", permissions=["change"])
    def resume_queues(self, request: HttpRequest, queryset: Any) -> None:
        for state in queryset:
            queues.resume(state.name)
        self.message_user(request, f"Resumed {queryset.count()} queue(s).")
