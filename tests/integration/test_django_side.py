"""Django integration: migrations, system checks, admin and dashboard access."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import models as auth_models
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from trigger_celery.checks import check_settings
from trigger_celery.conf import get_settings
from trigger_celery.models import Run

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_no_model_change_is_missing_a_migration():
    call_command("makemigrations", "trigger_celery", "--check", "--dry-run", verbosity=0)


@pytest.mark.parametrize(
    ("config", "check_id"),
    [
        ({"REDIS_URL": "redis://x", "NOT_A_SETTING": 1}, "trigger_celery.E002"),
        ({"ENVIRONMENT": "PROD"}, "trigger_celery.E003"),
        ({"CONCURRENCY_LIMIT": 0}, "trigger_celery.E004"),
        ({"BURST_FACTOR": 0.5}, "trigger_celery.E005"),
        ({"STORE": "memcached"}, "trigger_celery.E006"),
        ({"STORE": "redis"}, "trigger_celery.E007"),
        ({"RETRY": {"max_attempts": 0}}, "trigger_celery.E008"),
        ({"LEASE_SECONDS": 5, "HEARTBEAT_SECONDS": 5}, "trigger_celery.W001"),
        ({"LEASE_SECONDS": 0}, "trigger_celery.E014"),
        ({"HEARTBEAT_SECONDS": "5"}, "trigger_celery.E014"),
        ({"PUMP_INTERVAL": -1}, "trigger_celery.E014"),
        ({"PAYLOAD_MAX_SIZE": 1.5}, "trigger_celery.E014"),
        ({"DEVELOPMENT_TTL": 0}, "trigger_celery.E014"),
        ({"DEVELOPMENT_TTL": 10**12}, "trigger_celery.E014"),
        ({"LEASE_SECONDS": 1e12}, "trigger_celery.E014"),
        (
            {"RETRY": {"min_timeout_in_ms": 10**19, "max_timeout_in_ms": 10**20}},
            "trigger_celery.E008",
        ),
        ({"CELERY_QUEUE": ""}, "trigger_celery.E014"),
        ({"CELERY_QUEUE": "default\n"}, "trigger_celery.E014"),
        ({"CELERY_QUEUE": " default"}, "trigger_celery.E014"),
        ({"LOG_LINES_PER_RUN": -1}, "trigger_celery.E014"),
        ({"REDIS_URL": "htp://nope"}, "trigger_celery.E015"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/abc"}, "trigger_celery.E015"),
        ({"REDIS_URL": "redis://127.0.0.1:notaport/0"}, "trigger_celery.E015"),
        ({"REDIS_URL": "redis://127.0.0.1:99999/0"}, "trigger_celery.E015"),
        ({"BURST_FACTOR": float("nan")}, "trigger_celery.E005"),
        ({"BURST_FACTOR": True}, "trigger_celery.E005"),
        ({"LEASE_SECONDS": float("inf")}, "trigger_celery.E014"),
        ({"HOOKS": {"on_success": 5}}, "trigger_celery.E010"),
        ({"HOOKS": {"on_success": None}}, "trigger_celery.E010"),
        ({"HOOKS": {"on_success": "os.sep"}}, "trigger_celery.E011"),
        ({"MIDDLEWARE": [None]}, "trigger_celery.E011"),
        ({"STORAGE_PREFIX": "/abs"}, "trigger_celery.E018"),
        ({"STORAGE_PREFIX": "a/../b"}, "trigger_celery.E018"),
        ({"STORE": "database", "REDIS_URL": "redis://x/1"}, "trigger_celery.W007"),
        ({"PAYLOAD_INLINE_LIMIT": 2000, "PAYLOAD_MAX_SIZE": 1000}, "trigger_celery.W008"),
        ({"MIDDLEWARE": "tests.taskapp.tasks.exits"}, "trigger_celery.E010"),
    ],
)
def test_system_checks_report_misconfiguration(config, check_id):
    with override_settings(TRIGGER_CELERY=config):
        messages = check_settings()
    assert check_id in {m.id for m in messages}
    assert any(repr(v)[:20] in m.msg or k in m.msg for m in messages for k, v in config.items())


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379", "redis://127.0.0.1:6379/3", "unix:///tmp/r.sock?db=2"]
)
def test_a_redis_url_with_a_database_number_or_none_is_accepted(url):
    with override_settings(TRIGGER_CELERY={"REDIS_URL": url}):
        assert "trigger_celery.E015" not in {m.id for m in check_settings()}


def test_the_deploy_check_warns_of_the_development_environment_and_its_ttl():
    from trigger_celery.checks import check_deploy

    with override_settings(TRIGGER_CELERY={"ENVIRONMENT": "DEVELOPMENT"}):
        [warning] = check_deploy()
    assert warning.id == "trigger_celery.W009" and "expires after 600 s" in warning.msg
    with override_settings(TRIGGER_CELERY={"ENVIRONMENT": "PRODUCTION"}):
        assert check_deploy() == []


def test_zero_inline_limit_and_zero_log_lines_are_accepted():
    zeros = {"PAYLOAD_INLINE_LIMIT": 0, "LOG_LINES_PER_RUN": 0}
    with override_settings(TRIGGER_CELERY={"REDIS_URL": "redis://localhost/0", **zeros}):
        assert "trigger_celery.E014" not in {m.id for m in check_settings()}


def test_use_tz_false_is_an_error():
    with override_settings(USE_TZ=False):
        assert "trigger_celery.E016" in {m.id for m in check_settings()}


def test_settings_that_are_not_a_dict_are_named_by_the_check_and_at_use():
    with override_settings(TRIGGER_CELERY="redis://x"):
        messages = call_check_framework()
        assert [m.id for m in messages if m.id.startswith("trigger_celery.")] == [
            "trigger_celery.E001"
        ]
        with pytest.raises(ImproperlyConfigured, match=r"must be a dict .* got 'redis://x'"):
            get_settings()


def call_check_framework() -> list:
    """Every registered check, as ``manage.py check`` runs them (none may crash)."""
    from django.core import checks

    return checks.run_checks()


def test_a_project_without_django_celery_beat_is_told_to_add_it(tmp_path):
    """Said when apps load, before django-celery-beat's own unhelpful model error."""
    (tmp_path / "nobeat_settings.py").write_text(
        "from tests.settings import *\n"
        "INSTALLED_APPS = [a for a in INSTALLED_APPS if a != 'django_celery_beat']\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "nobeat_settings"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    done = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "needs 'django_celery_beat' in INSTALLED_APPS" in done.stderr


def test_sqlite_as_django_ships_it_is_warned_about_with_the_options_to_set():
    from trigger_celery.checks import _check_sqlite

    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
    with (
        pytest.warns(UserWarning, match="DATABASES"),  # Django's word on overriding it
        override_settings(DATABASES=databases),
    ):
        [warning] = [m for m in _check_sqlite() if m.id == "trigger_celery.W004"]
    assert "'transaction_mode': 'IMMEDIATE'" in warning.hint
    assert "journal_mode=WAL" in warning.hint


def test_postgresql_above_read_committed_is_warned_about():
    """The per-key lock of idempotent and debounced triggers looks for the key's holder
    once it holds the lock; at REPEATABLE READ that look reads an older snapshot."""
    from psycopg import IsolationLevel

    from trigger_celery.checks import _check_isolation

    engine = "django.db.backends.postgresql"
    for level, warned in [
        (IsolationLevel.REPEATABLE_READ, True),
        (IsolationLevel.SERIALIZABLE, True),
        (IsolationLevel.READ_COMMITTED, False),
        (None, False),
    ]:
        options = {} if level is None else {"isolation_level": level}
        databases = {"default": {"ENGINE": engine, "NAME": "x", "OPTIONS": options}}
        with (
            pytest.warns(UserWarning, match="DATABASES"),
            override_settings(DATABASES=databases),
        ):
            found = [m for m in _check_isolation() if m.id == "trigger_celery.W014"]
        assert bool(found) is warned, level
        if warned:
            assert level.name in found[0].msg and "isolation_level" in found[0].hint


def test_a_prefetching_worker_configuration_is_warned_about():
    with override_settings(
        CELERY_WORKER_PREFETCH_MULTIPLIER=4, CELERY_BROKER_URL="amqp://guest@127.0.0.1//"
    ):
        [warning] = [m for m in check_settings() if m.id == "trigger_celery.W006"]
    assert "4" in warning.msg and "--prefetch-multiplier 1" in warning.hint
    # On Redis the worker limits prefetch itself, unless the project turned that off.
    with override_settings(CELERY_WORKER_PREFETCH_MULTIPLIER=4):
        assert "trigger_celery.W006" not in [m.id for m in check_settings()]
    with override_settings(
        CELERY_WORKER_PREFETCH_MULTIPLIER=4, CELERY_WORKER_DISABLE_PREFETCH=False
    ):
        assert "trigger_celery.W006" in [m.id for m in check_settings()]


def test_a_broker_named_only_in_the_environment_is_the_one_the_prefetch_check_judges(tmp_path):
    """``CELERY_BROKER_URL`` in the environment is the broker Celery uses (ahead of the
    settings): on Redis the worker limits prefetch itself, so no W006; elsewhere W006."""
    (tmp_path / "envbroker_settings.py").write_text(
        "from tests.settings import *\n"
        "del CELERY_BROKER_URL\n"
        "CELERY_WORKER_PREFETCH_MULTIPLIER = 4\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "envbroker_settings"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])

    def check_output(broker: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "django", "check"],
            env={**env, "CELERY_BROKER_URL": broker},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    assert "trigger_celery.W006" not in check_output("redis://127.0.0.1:6379/15")
    assert "trigger_celery.W006" in check_output("amqp://guest@127.0.0.1//")


def test_an_unknown_storage_alias_is_an_error_naming_it():
    with override_settings(TRIGGER_CELERY={"STORAGE": "payloads"}):
        [error] = [m for m in check_settings() if m.id == "trigger_celery.E012"]
    assert "'payloads'" in error.msg


@pytest.fixture
def relative_media_root(settings):
    """MEDIA_ROOT unset, as startproject leaves it: the default storage is relative."""
    from django.core.files.storage import storages

    settings.MEDIA_ROOT = ""
    storages._storages.clear()  # storages are cached per alias; let this one be rebuilt
    yield settings
    storages._storages.clear()


def test_a_relative_storage_is_anchored_at_base_dir_never_the_working_directory(
    relative_media_root, tmp_path, monkeypatch
):
    from trigger_celery.engine.payloads import load_payload, store_payload

    relative_media_root.BASE_DIR = tmp_path / "project"
    monkeypatch.chdir(tmp_path)
    assert not [m for m in check_settings() if m.id == "trigger_celery.E017"]
    big = {"blob": "x" * 600_000}
    inline, ref = store_payload("run_anchored", "payload", big, limit=10_000_000)
    assert inline is None and (tmp_path / "project" / ref).is_file()
    assert not (tmp_path / ref).exists()
    monkeypatch.chdir(tmp_path / "project")  # another process, started elsewhere
    assert load_payload(None, ref) == big


def test_a_relative_storage_without_base_dir_is_an_error_and_refuses_large_values(
    relative_media_root,
):
    from trigger_celery.engine.payloads import store_payload
    from trigger_celery.errors import ConfigurationError

    del relative_media_root.BASE_DIR
    [error] = [m for m in check_settings() if m.id == "trigger_celery.E017"]
    assert "relative" in error.msg
    with pytest.raises(ConfigurationError, match="MEDIA_ROOT"):
        store_payload("run_unanchored", "payload", {"blob": "x" * 600_000}, limit=10_000_000)
    assert store_payload("run_small", "payload", {"n": 1}, limit=10_000_000) == ({"n": 1}, "")


def test_accepting_pickle_is_warned_about_and_not_accepting_json_refused():
    with override_settings(CELERY_ACCEPT_CONTENT=["pickle"]):
        assert "trigger_celery.E009" in {m.id for m in check_settings()}
    with override_settings(CELERY_ACCEPT_CONTENT=["pickle", "json"]):
        ids = {m.id for m in check_settings()}
        assert "trigger_celery.W010" in ids and "trigger_celery.E009" not in ids
    # The project's own tasks may use another serializer: runs are sent as JSON anyway.
    with override_settings(CELERY_TASK_SERIALIZER="pickle"):
        ids = {m.id for m in check_settings()}
        assert not ids & {"trigger_celery.E009", "trigger_celery.W010"}


def test_an_accept_content_that_is_not_a_list_or_is_empty_is_refused():
    # "json" was read as the content types j, s, o, n; [] as Celery's default, where a
    # worker refuses every message ("Refusing to deserialize untrusted content").
    with override_settings(CELERY_ACCEPT_CONTENT="json"):
        [error] = [m for m in check_settings() if m.id == "trigger_celery.E009"]
    assert error.msg == "CELERY_ACCEPT_CONTENT is 'json': it must be a list of content types"
    with override_settings(CELERY_ACCEPT_CONTENT=[]):
        [error] = [m for m in check_settings() if m.id == "trigger_celery.E009"]
    assert error.msg.startswith("CELERY_ACCEPT_CONTENT is []: workers would refuse")


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("foo://x", "No such transport: foo"),
        ("redis://localhost:99999/0", "Port out of range"),
        ("redis://localhost:6379/abc", "whose database 'abc' is not a number"),
        ("redis://127.0.0.1:6379/1;redis://localhost:0/1", "port 0 is not a port"),
    ],
)
def test_a_broker_url_no_worker_could_use_is_an_error_naming_it(settings, monkeypatch, url, said):
    """The check was silent, and each trigger returned a handle for a run re-sent at
    every lease's end, never to arrive."""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    settings.CELERY_BROKER_URL = url
    [error] = [m for m in check_settings() if m.id == "trigger_celery.E019"]
    assert error.msg.startswith("CELERY_BROKER_URL is ") and said in error.msg, error.msg
    for fine in ("redis://127.0.0.1:6379/1", "amqp://guest@127.0.0.1//", "memory://"):
        settings.CELERY_BROKER_URL = fine
        assert "trigger_celery.E019" not in {m.id for m in check_settings()}


def test_a_redis_store_without_a_broker_is_warned_about(settings, monkeypatch):
    """Celery would quietly use RabbitMQ on localhost; the embedded default sets its
    own broker, and a broker set anywhere (settings, celery.py, environment) is enough."""
    from celery import current_app

    assert "trigger_celery.W013" not in {m.id for m in check_settings()}
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    del settings.CELERY_BROKER_URL
    monkeypatch.setattr(current_app.conf, "broker_url", None)
    [warning] = [m for m in check_settings() if m.id == "trigger_celery.W013"]
    assert "amqp://guest@localhost//" in warning.msg and "CELERY_BROKER_URL" in warning.hint
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1")
    assert "trigger_celery.W013" not in {m.id for m in check_settings()}


def test_a_global_hard_time_limit_is_said_to_crash_runs():
    with override_settings(CELERY_TASK_TIME_LIMIT=60):
        [warning] = [m for m in check_settings() if m.id == "trigger_celery.W012"]
    assert "max_duration" in warning.hint


def test_eager_celery_is_said_to_leave_runs_to_a_worker():
    with override_settings(CELERY_TASK_ALWAYS_EAGER=True):
        [warning] = [m for m in check_settings() if m.id == "trigger_celery.W011"]
    assert "does not run runs eagerly" in warning.msg


def test_celery_settings_missing_from_django_are_read_from_the_celery_app(settings):
    """A prefetch multiplier not in settings.py is the Celery app's (celery.py's)."""
    from celery import current_app

    del settings.CELERY_WORKER_PREFETCH_MULTIPLIER
    settings.CELERY_BROKER_URL = "amqp://guest@127.0.0.1//"
    assert current_app.conf.worker_prefetch_multiplier == 4  # Celery's default
    [warning] = [m for m in check_settings() if m.id == "trigger_celery.W006"]
    assert "worker_prefetch_multiplier is 4" in warning.msg


@pytest.mark.parametrize("scheduler", [None, "django_celery_beat.schedulers:DatabaseScheduler"])
def test_a_beat_scheduler_that_is_not_ours_is_warned_about(scheduler):
    with override_settings(CELERY_BEAT_SCHEDULER=scheduler):
        messages = [m for m in check_settings() if m.id == "trigger_celery.W003"]
    assert len(messages) == 1 and repr(scheduler) in messages[0].msg


def test_a_correct_configuration_has_no_problem():
    with override_settings(
        TRIGGER_CELERY={"REDIS_URL": "redis://localhost/0", "ENVIRONMENT": "STAGING"}
    ):
        assert check_settings() == []


def _run(run_id: str, **fields) -> Run:
    defaults = {
        "task_identifier": "hello-world",
        "status": "COMPLETED",
        "environment": "PRODUCTION",
        "queue": "hello-world",
        "max_attempts": 3,
    }
    defaults.update(fields)
    return Run.objects.create(id=run_id, **defaults)


@pytest.mark.django_db
def test_dashboard_is_staff_only_and_run_pages_need_view_run(client, django_user_model):
    run = _run("run_staffonly")
    urls = [reverse("trigger_celery:run-list"), reverse("trigger_celery:run-detail", args=[run.id])]
    for url in urls:
        assert client.get(url).status_code == 302
    user = django_user_model.objects.create_user("plain", password="pw")
    client.force_login(user)
    for url in urls:
        assert client.get(url).status_code == 302
    user.is_staff = True
    user.save()
    for url in urls:
        assert client.get(url).status_code == 403  # staff, but granted nothing
    user.user_permissions.add(auth_models.Permission.objects.get(codename="view_run"))
    for url in urls:
        assert client.get(url).status_code == 200


@pytest.mark.django_db
def test_payloads_are_escaped_on_the_dashboard_and_in_admin(admin_client):
    evil = "<script>alert(1)</script>"
    run = _run("run_evil", payload={"name": evil}, output={"html": evil}, tags=[evil[:20]])
    for url in (
        reverse("trigger_celery:run-detail", args=[run.id]),
        reverse("admin:trigger_celery_run_change", args=[run.id]),
    ):
        body = admin_client.get(url).content.decode()
        assert evil not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


@pytest.mark.django_db
def test_admin_runs_are_read_only(admin_client):
    _run("run_admin1")
    assert admin_client.get(reverse("admin:trigger_celery_run_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:trigger_celery_run_add")).status_code == 403
    assert (
        admin_client.post(
            reverse("admin:trigger_celery_run_delete", args=["run_admin1"])
        ).status_code
        == 403
    )
    assert Run.objects.filter(id="run_admin1").exists()
    page = admin_client.get(
        reverse("admin:trigger_celery_run_changelist") + "?status__exact=COMPLETED&q=hello"
    )
    assert page.status_code == 200 and "run_admin1" in page.content.decode()


@pytest.mark.django_db
def test_dashboard_run_list_filters_and_pages(admin_client):
    for i in range(55):
        _run(f"run_page{i:03d}", status="FAILED" if i % 2 else "COMPLETED")
    page = admin_client.get(reverse("trigger_celery:run-list")).content.decode()
    assert "after=run_page005" in page  # 50 newest shown, link to older ones
    failed = admin_client.get(
        reverse("trigger_celery:run-list") + "?status=FAILED"
    ).content.decode()
    assert "run_page053" in failed and "run_page054" not in failed


def test_hook_paths_in_settings_are_checked():
    bad = {"HOOKS": {"on_succes": ["os.getcwd"], "on_failure": ["no.such.module.fn"]}}
    with override_settings(TRIGGER_CELERY=bad):
        ids = {m.id for m in check_settings()}
    assert {"trigger_celery.E010", "trigger_celery.E011"} <= ids


@pytest.mark.django_db
def test_queue_admin_pauses_and_resumes_with_the_change_permission(
    admin_client, client, django_user_model
):
    from trigger_celery.models import QueueState

    changelist = reverse("admin:trigger_celery_queuestate_changelist")
    assert admin_client.get(changelist).status_code == 200
    assert QueueState.objects.filter(name="limit-2").exists()  # queues declared in code
    data = {"action": "pause_queues", "_selected_action": ["limit-2"]}
    admin_client.post(changelist, data)
    assert QueueState.objects.get(name="limit-2").paused
    admin_client.post(changelist, {**data, "action": "resume_queues"})
    assert not QueueState.objects.get(name="limit-2").paused
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_queuestate"))
    client.force_login(viewer)
    client.post(changelist, data)
    assert not QueueState.objects.get(name="limit-2").paused  # no change permission, no pause


@pytest.mark.django_db
def test_queue_admin_lists_only_queues_in_code_and_shows_every_limit(admin_client):
    from trigger_celery.models import QueueState

    QueueState.objects.create(name="removed-from-code")  # left by an earlier deploy
    changelist = reverse("admin:trigger_celery_queuestate_changelist")
    page = admin_client.get(changelist).content.decode()
    assert "removed-from-code" not in page
    data = {"action": "pause_queues", "_selected_action": ["removed-from-code", "limit-2"]}
    assert admin_client.post(changelist, data).status_code == 302  # not a 500
    assert QueueState.objects.get(name="limit-2").paused
    assert not QueueState.objects.get(name="removed-from-code").paused
    admin_client.post(changelist, {**data, "action": "resume_queues"})
    assert "rate 4/s" in page and "1; 2 over all keys" in page


def test_a_malformed_redis_url_is_named_when_the_store_is_built():
    from trigger_celery.coordination.factory import get_store, reset_store_cache
    from trigger_celery.errors import ConfigurationError

    with override_settings(TRIGGER_CELERY={"REDIS_URL": "htp://nope"}):
        reset_store_cache()
        try:
            with pytest.raises(ConfigurationError, match="REDIS_URL'] is 'htp://nope'"):
                get_store()
        finally:
            reset_store_cache()
