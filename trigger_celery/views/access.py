"""Who may see and do what on the dashboard, and the headers every page carries.

Every dashboard view is wrapped in :func:`dashboard_view`: login and staff first (an
anonymous or non-staff user is sent to the admin login, as ``staff_member_required``
does), then the model permission the page needs (403 without it: a dashboard page that
names the permission). State changes are POST only; Django's CSRF middleware checks
their token.

Permissions used:
    view_run                       runs list, run detail, their JSON, tasks page
    cancel_run / replay_run        cancel / replay (single and bulk)
    change_run                     reschedule a DELAYED run (it changes the run's start)
    trigger_run                    the test page
    view_queuestate                queues page
    change_queuestate              pause, resume, override a queue's limit
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
)
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers

# Our own origin only; no inline script (JavaScript lives in static files, data reaches
# it through json_script). Inline styles are not script and stay allowed for the admin's
# widgets; the dashboard itself uses its stylesheet.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'self'"
)

View = Callable[..., HttpResponse]


def require(request: HttpRequest, codename: str) -> None:
    """Raise 403 unless the user has ``trigger_celery.<codename>``."""
    if not request.user.has_perm(f"trigger_celery.{codename}"):
        raise PermissionDenied(f"you need the trigger_celery.{codename} permission")


def can(request: HttpRequest, codename: str) -> bool:
    return bool(request.user.has_perm(f"trigger_celery.{codename}"))


def secure_headers(response: HttpResponse) -> HttpResponse:
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.setdefault("X-Content-Type-Options", "nosniff")
    response.setdefault("Referrer-Policy", "same-origin")
    # Payloads, outputs and logs stay out of the browser's cache (and its Back button
    # after logging out), as on the admin's pages.
    add_never_cache_headers(response)
    return response


def refused(request: HttpRequest, reason: str) -> HttpResponse:
    """A 403 in the dashboard's layout, saying what is missing (escaped by the template)."""
    return render(
        request,
        "trigger_celery/forbidden.html",
        {"reason": reason or "you may not do this"},
        status=403,
    )


def not_found(request: HttpRequest, reason: str) -> HttpResponse:
    """A 404 in the dashboard's layout, saying what was not found (escaped)."""
    return render(
        request,
        "trigger_celery/not_found.html",
        {"reason": reason or "not found"},
        status=404,
    )


def dashboard_view(
    permission: str | None, *, methods: tuple[str, ...] = ("GET", "HEAD")
) -> Callable[[View], View]:
    """Staff only, ``permission`` required, only ``methods`` allowed, CSP on every answer
    (the login redirect, a 403 and a 404 included)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def inner(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                return HttpResponseNotAllowed(methods)
            try:
                if permission is not None:
                    require(request, permission)
                return view(request, *args, **kwargs)
            except PermissionDenied as exc:
                return refused(request, str(exc))
            except Http404 as exc:
                return not_found(request, str(exc))

        guarded = staff_member_required(inner)

        @wraps(view)
        def outer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return secure_headers(guarded(request, *args, **kwargs))

        return outer

    return decorate
