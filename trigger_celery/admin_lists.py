"""Django admin's run list: its task and tag filters, and a paginator that counts no
more rows than a page needs, on a table of millions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.http import HttpRequest
from django.utils.functional import cached_property

from trigger_celery.engine.registry import registry
from trigger_celery.models import Run


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # Tags of the most recent runs only: a full scan would not scale to big tables.
        seen: dict[str, None] = {}
        for tags in Run.objects.order_by("-id").values_list("tags", flat=True)[:500]:
            for tag in tags or ():
                seen.setdefault(tag, None)
        return [(t, t) for t in sorted(seen)[:50]]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        if not value:
            return queryset
        return queryset.with_tag(value)


class TaskFilter(admin.SimpleListFilter):
    title = "task"
    parameter_name = "task"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        registry.ensure_discovered()  # the tasks this project defines, not a table scan
        return [(t, t) for t in sorted(registry.tasks)]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        return queryset.filter(task_identifier=value) if value else queryset


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP rows: ``SELECT COUNT(*) FROM (... LIMIT n)`` costs the
    same on a million rows as on a thousand. Past the cap the last page is not known
    exactly: the admin offers the first 20 pages; the dashboard pages through all."""

    COUNT_CAP = 1_000

    @cached_property
    def count(self) -> int:
        # Unordered: "any 1,001 matching rows" lets PostgreSQL stop early in a bitmap
        # scan (the tag filter's GIN index) instead of sorting every match by id first.
        return int(self.object_list.order_by()[: self.COUNT_CAP + 1].count())
