"""Configuration from the environment: defaults, parsing, and one clear line for a bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler_project.config import BASE_DIR, ConfigError, load


def test_nothing_set_means_the_embedded_default(tmp_path: Path) -> None:
    config = load({"DATA_DIR": str(tmp_path)})
    assert config.embedded
    assert config.port == 3080
    assert config.default_tz == "Europe/Berlin"
    assert config.database["ENGINE"] == "django.db.backends.sqlite3"
    assert config.database["NAME"] == str(tmp_path / "scheduler.sqlite3")
    assert config.broker_url == "filesystem://"
    assert (tmp_path / "broker" / "out").is_dir()
    assert config.nats_url is None
    assert (config.nats_events_stream, config.events_source) == (None, "/scheduler")
    assert config.jwks_url is None
    assert config.debug is False
    assert (config.worker_heartbeat_seconds, config.worker_offline_after_seconds) == (10, 60)


def test_embedded_secret_key_is_random_and_kept(tmp_path: Path) -> None:
    first = load({"DATA_DIR": str(tmp_path)}).secret_key
    assert len(first) >= 48
    assert load({"DATA_DIR": str(tmp_path)}).secret_key == first  # every process signs alike
    assert load({"DATA_DIR": str(tmp_path / "other")}).secret_key != first
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"


def test_full_configuration_is_read(tmp_path: Path) -> None:
    config = load(
        {
            "DATA_DIR": str(tmp_path),
            "PORT": "8080",
            "POSTGRES_URL": "postgres://app:pw@db.internal:5433/scheduler",
            "REDIS_URL": "redis://cache.internal:6379/2",
            "NATS_URL": "nats://bus.internal:4222",
            "JWKS_URL": "https://idp.internal/.well-known/jwks.json",
            "DEFAULT_TZ": "America/New_York",
            "WEBHOOK_HMAC_SECRET": "hmac",
            "SECRET_KEY": "k" * 40,
            "DEBUG": "true",
            "ALLOWED_HOSTS": "scheduler.internal, api.internal",
        }
    )
    assert not config.embedded
    assert config.port == 8080
    assert config.database["ENGINE"] == "django.db.backends.postgresql"
    assert (config.database["HOST"], config.database["PORT"], config.database["NAME"]) == (
        "db.internal",
        5433,
        "scheduler",
    )
    assert config.broker_url == "redis://cache.internal:6379/2"
    assert config.broker_transport_options["visibility_timeout"] >= 3600
    assert config.allowed_hosts == ["scheduler.internal", "api.internal"]
    assert config.debug is True
    assert not config.database.get("DISABLE_SERVER_SIDE_CURSORS")


def test_a_transaction_pooler_gets_no_session_state(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path), "SECRET_KEY": "k" * 40, "POSTGRES_URL": "postgres://app@pgbouncer:6432/scheduler"}

    config = load({**env, "POSTGRES_TRANSACTION_POOLING": "true"})

    assert config.database["DISABLE_SERVER_SIDE_CURSORS"] is True


BAD = [
    ("PORT", "eighty", "PORT"),
    ("PORT", "70000", "PORT"),
    ("POSTGRES_URL", "mysql://db/x", "POSTGRES_URL"),
    ("POSTGRES_URL", "postgres://db:notaport/x", "POSTGRES_URL"),
    ("POSTGRES_URL", "postgres:///", "POSTGRES_URL"),
    ("REDIS_URL", "localhost:6379", "REDIS_URL"),
    ("NATS_URL", "http://bus:4222", "NATS_URL"),
    ("NATS_EVENTS_STREAM", "scheduler.events", "NATS_EVENTS_STREAM"),
    ("EVENTS_SOURCE", "/the scheduler", "EVENTS_SOURCE"),
    ("JWKS_URL", "idp.internal/jwks", "JWKS_URL"),
    ("DEFAULT_TZ", "Mars/Olympus", "DEFAULT_TZ"),
    ("DEBUG", "maybe", "DEBUG"),
    ("POSTGRES_TRANSACTION_POOLING", "pgbouncer", "POSTGRES_TRANSACTION_POOLING"),
    ("SECRET_KEY", "short", "SECRET_KEY"),
    ("RUN_LEASE_GRACE_SECONDS", "0", "RUN_LEASE_GRACE_SECONDS"),
    ("RUN_LEASE_GRACE_SECONDS", "soon", "RUN_LEASE_GRACE_SECONDS"),
    ("WORKER_HEARTBEAT_SECONDS", "0", "WORKER_HEARTBEAT_SECONDS"),
    ("WORKER_OFFLINE_AFTER_SECONDS", "a minute", "WORKER_OFFLINE_AFTER_SECONDS"),
    # The default offline period (60 s) must hold at least two heartbeats.
    ("WORKER_HEARTBEAT_SECONDS", "31", "WORKER_OFFLINE_AFTER_SECONDS"),
]


@pytest.mark.parametrize(("variable", "value", "named"), BAD, ids=[f"{v}={x}" for v, x, _ in BAD])
def test_bad_value_names_the_variable(tmp_path: Path, variable: str, value: str, named: str) -> None:
    env = {"DATA_DIR": str(tmp_path), "SECRET_KEY": "k" * 40, variable: value}
    with pytest.raises(ConfigError) as error:
        load(env)
    assert error.value.variable == named
    assert str(error.value).startswith(f"{named}: ")


def test_secret_key_is_required_outside_the_embedded_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load({"DATA_DIR": str(tmp_path), "POSTGRES_URL": "postgres://db/scheduler"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DEFAULT_TZ", "Mars/Olympus"), ("POSTGRES_URL", "postgres://db:port/x"), ("PORT", "-1")],
    ids=["timezone", "database_url", "port"],
)
def test_start_up_stops_with_one_clear_line(tmp_path: Path, variable: str, value: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"POSTGRES_URL", "REDIS_URL", "SECRET_KEY"}}
    env.update({"DATA_DIR": str(tmp_path), variable: value})
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: {variable}: ")
