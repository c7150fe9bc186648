"""A run's actions: cancel, replay (with an edited payload), reschedule. POST only."""

from __future__ import annotations

import json
import logging
from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from pydantic import ValidationError

from trigger_celery.api.runs import runs
from trigger_celery.core.durations import BeyondHorizonError, parse_delay, parse_duration
from trigger_celery.engine.actions import cancel_run, replay_run
from trigger_celery.engine.payloads import load_payload
from trigger_celery.engine.registry import registry
from trigger_celery.errors import InvalidRunStateError, RunNotFoundError, TriggerCeleryError
from trigger_celery.models import Run
from trigger_celery.views.access import dashboard_view

log = logging.getLogger("trigger_celery.dashboard")


def typed_delay(text: str) -> str | int | datetime:
    """A delay typed in the dashboard, for ``parse_delay``: a bare number is seconds (as
    ``runs.reschedule(delay=90)`` takes it), and a date or a time without a zone is in
    the project's time zone, the one every time on these pages is shown in."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text  # a duration, or what parse_delay names as unreadable
    if timezone.is_naive(moment):
        return timezone.make_aware(moment, timezone.get_current_timezone())
    return moment


FORM_DELAY = (
    "a duration such as 30s, 5m or 1h30m, a number of seconds, or a date (YYYY-MM-DD HH:MM)"
)


def typed_duration_problem(name: str, text: str) -> str | None:
    """What a delay or ttl typed in a form got wrong, in the form's terms (the API's
    message speaks of timedelta and datetime objects); None when it reads."""
    try:
        if name == "delay":
            parse_delay(typed_delay(text), now=timezone.now())
        else:
            parse_duration(int(text) if text.isdigit() else text, name=name)
    except BeyondHorizonError:
        return f"{text!r} is more than 10 years away"
    except ValueError:
        kind = FORM_DELAY if name == "delay" else "a duration such as 10m or 1h30m"
        return f"{text!r} is not a {name}; type {kind}"
    return None


def _back(run_id: str) -> HttpResponse:
    return redirect("trigger_celery:run-detail", run_id)


# A refused replay's payload, kept for the run page to show again (in the session, up to
# this many characters): an edit is not lost to a typo in it.
DRAFT_KEPT = 256 * 1024
DRAFT_IN_COOKIE = 2 * 1024


def draft_key(run_id: str) -> str:
    return f"trigger_celery:replay-draft:{run_id}"


def _refused_replay(request: HttpRequest, run_id: str, text: str) -> HttpResponse:
    session = getattr(request, "session", None)
    # A session kept in a signed cookie keeps a small draft only: a large one would make
    # a header browsers drop and proxies refuse.
    in_cookie = settings.SESSION_ENGINE.endswith("signed_cookies")
    if session is not None and len(text) <= (DRAFT_IN_COOKIE if in_cookie else DRAFT_KEPT):
        session[draft_key(run_id)] = text
    return _back(run_id)


def _exists(run_id: str) -> Run:
    if "\x00" in run_id:  # no run has one, and the database cannot compare it
        raise Http404(f"no run {run_id!r}")
    run = Run.objects.filter(id=run_id).only("id", "task_identifier", "status").first()
    if run is None:
        raise Http404(f"no run {run_id}")
    return run


@dashboard_view("cancel_run", methods=("POST",))
def cancel(request: HttpRequest, run_id: str) -> HttpResponse:
    _exists(run_id)
    try:
        canceled = cancel_run(run_id)
    except RunNotFoundError as exc:
        raise Http404(str(exc)) from None
    if canceled:
        messages.success(request, f"Run {run_id} is CANCELED.")
    else:  # it ended meanwhile (the page was older than that): nothing changed
        status = Run.objects.filter(id=run_id).values_list("status", flat=True).first()
        messages.error(request, f"Not canceled: run {run_id} had already ended ({status}).")
    return _back(run_id)


@dashboard_view("replay_run", methods=("POST",))
def replay(request: HttpRequest, run_id: str) -> HttpResponse:
    """Replay with the payload from the form (the original's, edited or not)."""
    run = _exists(run_id)
    text = request.POST.get("payload", "")
    if not text.strip():  # no payload given (a cleared field, a bare POST): the same one
        stored = Run.objects.filter(id=run_id).values_list("payload", "payload_ref").first()
        if stored is None:
            raise Http404(f"no run {run_id}")
        inline, ref = stored
        try:
            payload = load_payload(inline, ref)
        except Exception as exc:  # a storage this process cannot read, a damaged file...
            log.warning("could not read the stored payload %s of %s", ref, run_id, exc_info=True)
            messages.error(
                request,
                f"Not replayed: its payload could not be read (stored at {ref}): "
                f"{type(exc).__name__}: {exc}",
            )
            return _back(run_id)
    else:
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            messages.error(request, f"Not replayed: the payload is not JSON ({exc}).")
            return _refused_replay(request, run_id, text)
        if not _fits_schema(request, run, payload):
            return _refused_replay(request, run_id, text)
    try:
        handle = replay_run(run_id, {}, payload)
    except (TriggerCeleryError, ValueError) as exc:  # NaN, a NUL character, too large
        messages.error(request, f"Not replayed: {exc}")
        return _refused_replay(request, run_id, text)
    messages.success(request, f"Replayed {run_id} as {handle.id}.")
    return redirect("trigger_celery:run-detail", handle.id)


def _fits_schema(request: HttpRequest, run: Run, payload: object) -> bool:
    """An edited payload fits the task's schema (said on the page when it does not)."""
    definition = registry.get_task(run.task_identifier)
    if definition is not None:
        try:
            definition.parse_payload(payload)
        except (ValidationError, ValueError, TypeError) as exc:
            messages.error(request, f"Not replayed: the payload does not fit the schema: {exc}")
            return False
    return True


@dashboard_view("change_run", methods=("POST",))
def reschedule(request: HttpRequest, run_id: str) -> HttpResponse:
    """Move a DELAYED run's start: ``delay`` is a duration ("30s", "5m") or a date."""
    _exists(run_id)
    delay = request.POST.get("delay", "").strip()
    if not delay:
        messages.error(request, "Not rescheduled: give a delay such as 30s, 5m or 2h.")
        return _back(run_id)
    if (problem := typed_duration_problem("delay", delay)) is not None:
        messages.error(request, f"Not rescheduled: {problem}.")
        return _back(run_id)
    value = typed_delay(delay)
    try:
        runs.reschedule(run_id, delay=value)
    except InvalidRunStateError as exc:
        messages.error(request, f"Not rescheduled: {exc}")
    else:
        past = isinstance(value, datetime) and parse_delay(value, now=timezone.now()) is None
        when = "; that date is not in the future, so it starts now" if past else ""
        messages.success(request, f"Run {run_id} rescheduled ({delay}){when}.")
    return _back(run_id)
