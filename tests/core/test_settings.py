"""Settings defaults and environment handling, each checked in a fresh interpreter.

The settings module reads the environment at import time, so every test imports it in a
subprocess with an environment it controls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.procs import ROOT

# Variables that would make a test depend on the shell it runs in.
_STRIPPED = {
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "DJANGO_SETTINGS_MODULE",
}

_DUMP = """
import json, sys
import moc_site.settings as s
names = sys.argv[1:]
print(json.dumps({n: getattr(s, n) for n in names}, default=str))
"""

_CELERY_DUMP = """
import json
from moc_site.celery import app
c = app.conf
print(json.dumps({
    "acks_late": c.task_acks_late,
    "reject_on_worker_lost": c.task_reject_on_worker_lost,
    "prefetch_multiplier": c.worker_prefetch_multiplier,
    "cancel_on_connection_loss": c.worker_cancel_long_running_tasks_on_connection_loss,
    "accept_content": list(c.accept_content),
    "task_serializer": c.task_serializer,
    "soft_shutdown_timeout": c.worker_soft_shutdown_timeout,
    "broker_visibility_timeout": c.broker_transport_options["visibility_timeout"],
    "result_visibility_timeout": c.result_backend_transport_options["visibility_timeout"],
    "task_time_limit": c.task_time_limit,
}))
"""

A_SECRET = "x" * 50


def _env(var_dir: Path, **extra: str | None) -> dict[str, str]:
    """The current environment without MOC's variables, plus `extra` (None removes one)."""
    env = {
        k: v for k, v in os.environ.items() if k not in _STRIPPED and not k.startswith(("MOC_", "PYTEST_"))
    }
    env.update(PYTHONPATH=str(ROOT), MOC_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="moc_site.settings")
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _run(code: str, var_dir: Path, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=_env(var_dir, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_of(var_dir: Path, *names: str, **env: str | None) -> dict[str, Any]:
    proc = _run(_DUMP, var_dir, *names, **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def import_error(var_dir: Path, **env: str) -> str:
    proc = _run(_DUMP, var_dir, "DEBUG", **env)
    assert proc.returncode != 0, f"settings imported without error: {proc.stdout}"
    return proc.stderr


def test_debug_is_off_by_default(tmp_path: Path) -> None:
    assert settings_of(tmp_path, "DEBUG") == {"DEBUG": False}


def test_debug_true_turns_debug_on(tmp_path: Path) -> None:
    assert settings_of(tmp_path, "DEBUG", DEBUG="true") == {"DEBUG": True}


def test_database_is_sqlite_under_the_var_dir_by_default(tmp_path: Path) -> None:
    db = settings_of(tmp_path, "DATABASES")["DATABASES"]["default"]

    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(tmp_path / "moc.sqlite3")


def test_var_dir_defaults_to_var_in_the_checkout(tmp_path: Path) -> None:
    # SECRET_KEY given, so nothing is written into the real var/.
    found = settings_of(tmp_path, "VAR_DIR", "DATABASES", MOC_VAR_DIR=None, SECRET_KEY=A_SECRET)

    assert found["VAR_DIR"] == str(ROOT / "var")
    assert found["DATABASES"]["default"]["NAME"] == str(ROOT / "var" / "moc.sqlite3")


def test_database_url_switches_to_postgresql(tmp_path: Path) -> None:
    db = settings_of(tmp_path, "DATABASES", DATABASE_URL="postgres://u:p@h:5432/db")["DATABASES"]["default"]

    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == ("db", "u", "p", "h", 5432)


def test_redis_url_defaults_to_local_redis(tmp_path: Path) -> None:
    assert settings_of(tmp_path, "REDIS_URL")["REDIS_URL"] == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("url", [None, "redis://cache.internal:6380/2"])
def test_celery_and_cache_use_the_redis_url(tmp_path: Path, url: str | None) -> None:
    env = {"REDIS_URL": url} if url else {}
    found = settings_of(tmp_path, "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CACHES", **env)
    expected = url or "redis://127.0.0.1:6379/0"

    assert found["CELERY_BROKER_URL"] == expected
    assert found["CELERY_RESULT_BACKEND"] == expected
    assert found["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert found["CACHES"]["default"]["LOCATION"] == expected


def test_channel_layer_is_channels_redis_on_the_redis_url_with_a_connection_cap(tmp_path: Path) -> None:
    layer = settings_of(tmp_path, "CHANNEL_LAYERS", REDIS_URL="redis://r:6379/1")["CHANNEL_LAYERS"]["default"]

    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    (host,) = layer["CONFIG"]["hosts"]
    assert host["address"] == "redis://r:6379/1"
    assert host["max_connections"] > 100


@pytest.mark.parametrize(
    "env",
    [{}, {"DEBUG": "true"}, {"MOC_PRODUCTION": "true", "SECRET_KEY": A_SECRET}],
    ids=["default", "debug", "production"],
)
def test_channel_layer_is_never_in_memory(tmp_path: Path, env: dict[str, str]) -> None:
    layer = settings_of(tmp_path, "CHANNEL_LAYERS", **env)["CHANNEL_LAYERS"]["default"]

    assert "InMemory" not in layer["BACKEND"]
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"


def test_secret_key_is_generated_once_into_the_var_dir(tmp_path: Path) -> None:
    first = settings_of(tmp_path, "SECRET_KEY")["SECRET_KEY"]
    second = settings_of(tmp_path, "SECRET_KEY")["SECRET_KEY"]

    assert len(first) >= 50
    assert (tmp_path / "secret_key").read_text().strip() == first
    assert second == first


def test_generated_secret_key_file_is_readable_only_by_its_owner(tmp_path: Path) -> None:
    settings_of(tmp_path, "SECRET_KEY")

    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_without_secret_key_fails_naming_it(tmp_path: Path) -> None:
    stderr = import_error(tmp_path, MOC_PRODUCTION="true")

    assert "ImproperlyConfigured" in stderr
    assert "SECRET_KEY" in stderr
    assert not (tmp_path / "secret_key").exists()


def test_secret_key_file_is_read(tmp_path: Path) -> None:
    secret_file = tmp_path / "docker-secret"
    secret_file.write_text(f"  {A_SECRET}\n")

    found = settings_of(tmp_path, "SECRET_KEY", MOC_PRODUCTION="true", SECRET_KEY_FILE=str(secret_file))

    assert found["SECRET_KEY"] == A_SECRET


def test_unreadable_secret_key_file_fails_naming_it(tmp_path: Path) -> None:
    stderr = import_error(tmp_path, SECRET_KEY_FILE=str(tmp_path / "missing"))

    assert "ImproperlyConfigured" in stderr
    assert "SECRET_KEY_FILE" in stderr


def test_non_boolean_debug_fails_naming_debug(tmp_path: Path) -> None:
    stderr = import_error(tmp_path, DEBUG="maybe")

    assert "ImproperlyConfigured" in stderr
    assert "DEBUG must be a boolean" in stderr


def test_non_integer_number_fails_naming_the_variable(tmp_path: Path) -> None:
    stderr = import_error(tmp_path, MOC_TASK_TIME_LIMIT="six hours")

    assert "MOC_TASK_TIME_LIMIT must be an integer" in stderr


def test_production_turns_on_https_hardening(tmp_path: Path) -> None:
    found = settings_of(
        tmp_path,
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        MOC_PRODUCTION="true",
        SECRET_KEY=A_SECRET,
    )

    assert found == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
    }


@pytest.fixture
def celery_conf(tmp_path: Path) -> dict[str, Any]:
    proc = _run(_CELERY_DUMP, tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_celery_acknowledges_late_and_requeues_tasks_of_lost_workers(celery_conf: dict[str, Any]) -> None:
    assert celery_conf["acks_late"] is True
    assert celery_conf["reject_on_worker_lost"] is True


def test_celery_workers_prefetch_one_message_at_a_time(celery_conf: dict[str, Any]) -> None:
    assert celery_conf["prefetch_multiplier"] == 1


def test_celery_cancels_running_tasks_when_the_broker_connection_is_lost(celery_conf: dict[str, Any]) -> None:
    assert celery_conf["cancel_on_connection_loss"] is True


def test_celery_accepts_json_only(celery_conf: dict[str, Any]) -> None:
    assert celery_conf["accept_content"] == ["json"]
    assert celery_conf["task_serializer"] == "json"


def test_celery_workers_shut_down_softly(celery_conf: dict[str, Any]) -> None:
    assert celery_conf["soft_shutdown_timeout"] > 0


def test_celery_visibility_timeout_is_the_same_everywhere(
    tmp_path: Path, celery_conf: dict[str, Any]
) -> None:
    setting = settings_of(tmp_path, "CELERY_VISIBILITY_TIMEOUT")["CELERY_VISIBILITY_TIMEOUT"]

    assert celery_conf["broker_visibility_timeout"] == setting
    assert celery_conf["result_visibility_timeout"] == setting


def test_celery_visibility_timeout_outlasts_the_longest_task(celery_conf: dict[str, Any]) -> None:
    assert celery_conf["broker_visibility_timeout"] > celery_conf["task_time_limit"]


def test_visibility_timeout_follows_a_longer_task_time_limit(tmp_path: Path) -> None:
    found = settings_of(
        tmp_path, "CELERY_TASK_TIME_LIMIT", "CELERY_VISIBILITY_TIMEOUT", MOC_TASK_TIME_LIMIT=str(48 * 3600)
    )

    assert found["CELERY_TASK_TIME_LIMIT"] == 48 * 3600
    assert found["CELERY_VISIBILITY_TIMEOUT"] > 48 * 3600
