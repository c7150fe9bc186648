"""The package's admin classes' base: a NUL character in a lookup is refused before the
database sees it (PostgreSQL cannot even compare one: a 500, where any other bad value
is the admin's own answer)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import SEARCH_VAR, ChangeList
from django.http import HttpRequest


class StorableLookupsAdmin(admin.ModelAdmin):
    """An object id with a NUL character is an object that does not exist; a list filter
    or a selected row with one is a bad lookup, as the admin answers any other (the
    search box already refuses one with a message)."""

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        if "\x00" in object_id:  # no row has one
            return None
        return super().get_object(request, object_id, from_field)

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        given = [
            value
            for name, values in request.GET.lists()
            if name != SEARCH_VAR
            for value in [name, *values]
        ]
        given += request.POST.getlist(ACTION_CHECKBOX_NAME)
        if any("\x00" in value for value in given):
            raise IncorrectLookupParameters("a NUL character cannot be compared")
        return super().get_changelist_instance(request)
