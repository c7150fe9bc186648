"""The django.tasks backend: a clear error on Django 5.2, option checks on Django 6."""

from __future__ import annotations

import importlib
import os
import sys

import django
import pytest


@pytest.mark.skipif(django.VERSION >= (6, 0), reason="Django 6+ has django.tasks")
def test_importing_the_backend_without_django_tasks_says_which_django_is_needed():
    sys.modules.pop("trigger_celery.django_tasks", None)
    with pytest.raises(ImportError, match=r"needs django\.tasks, which Django 6\.0 added") as err:
        importlib.import_module("trigger_celery.django_tasks")
    assert django.get_version() in str(err.value)
    assert "backport is not supported" in str(err.value)


@pytest.mark.skipif(django.VERSION < (6, 0), reason="django.tasks exists from Django 6.0")
def test_bad_backend_options_are_a_system_check_error_naming_the_value():
    from trigger_celery.django_tasks import TriggerCeleryBackend

    backend = TriggerCeleryBackend(
        "jobs", {"QUEUES": ["default"], "OPTIONS": {"PRIORITY_SECONDS": -2, "COLOUR": "red"}}
    )
    messages = [m.msg for m in backend.check()]
    assert any("'COLOUR'" in m for m in messages)
    assert any("PRIORITY_SECONDS" in m and "-2" in m for m in messages)
    assert all(m.startswith("TASKS['jobs']") for m in messages)
    assert TriggerCeleryBackend("ok", {"OPTIONS": {}}).check() == []


@pytest.mark.skipif(django.VERSION < (6, 0), reason="django.tasks exists from Django 6.0")
@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), 10**7])
def test_priority_seconds_no_priority_could_use_is_a_system_check_error(seconds):
    """Passed, then every enqueue with a priority above 0 failed naming neither."""
    from trigger_celery.django_tasks import TriggerCeleryBackend

    backend = TriggerCeleryBackend("jobs", {"OPTIONS": {"PRIORITY_SECONDS": seconds}})
    (message,) = [m.msg for m in backend.check()]
    assert "OPTIONS['PRIORITY_SECONDS'] must be a number above 0 and at most 3153600" in message
    assert message.endswith(f"got {seconds!r}")
    ok = TriggerCeleryBackend("ok", {"OPTIONS": {"PRIORITY_SECONDS": 3_153_600}})
    assert ok.check() == []


@pytest.mark.skipif(django.VERSION < (6, 0), reason="django.tasks exists from Django 6.0")
def test_queues_that_are_not_a_list_of_queue_names_are_a_system_check_error():
    """Django makes a set of QUEUES: "emails" would be the queues e, m, a, i, l, s."""
    from trigger_celery.django_tasks import TriggerCeleryBackend

    assert [m.msg for m in TriggerCeleryBackend("jobs", {"QUEUES": "emails"}).check()] == [
        "TASKS['jobs']: QUEUES must be a list of queue names, got 'emails'"
    ]
    messages = [m.msg for m in TriggerCeleryBackend("jobs", {"QUEUES": ["ok", ""]}).check()]
    assert len(messages) == 1 and "QUEUES: '' is not" in messages[0]
    assert [m.id for m in TriggerCeleryBackend("jobs", {"QUEUES": 3}).check()] == [
        "trigger_celery.E201"
    ]


@pytest.mark.skipif(django.VERSION < (6, 0), reason="django.tasks exists from Django 6.0")
def test_the_configured_backend_passes_djangos_checks():
    from django.core import checks

    errors = [m for m in checks.run_checks() if m.level >= checks.ERROR]
    assert errors == []


@pytest.mark.skipif(django.VERSION < (6, 0), reason="django.tasks exists from Django 6.0")
def test_the_backend_without_trigger_celery_installed_says_to_install_it(tmp_path):
    """Not the models' "doesn't declare an explicit app_label" traceback."""
    import subprocess

    (tmp_path / "no_app_settings.py").write_text(
        "SECRET_KEY = 'x'\nUSE_TZ = True\n"
        "INSTALLED_APPS = ['django.contrib.contenttypes', 'django.contrib.auth']\n"
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': ':memory:'}}\n"
        "TASKS = {'default': {'BACKEND': 'trigger_celery.django_tasks.TriggerCeleryBackend'}}\n"
    )
    code = "import django; django.setup()\nfrom django.tasks import task\ntask(print)\n"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "no_app_settings", "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last
    assert "'trigger_celery' is not in INSTALLED_APPS" in last
