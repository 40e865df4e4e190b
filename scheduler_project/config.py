"""Configuration read from the environment, validated in one place.

Every setting the service takes from its environment is parsed here. A bad value raises
:class:`ConfigError` naming the variable, so start-up stops with one clear line instead of a
traceback deep inside a driver. With nothing set the service runs on its embedded default:
SQLite and a filesystem Celery broker under ``DATA_DIR``, no server processes needed.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


@dataclass(frozen=True)
class Config:
    port: int
    database: dict[str, Any]
    broker_url: str
    broker_transport_options: dict[str, Any]
    redis_url: str | None
    nats_url: str | None
    nats_events_stream: str | None
    events_source: str
    jwks_url: str | None
    jwt_audience: str | None
    jwt_issuer: str | None
    default_tz: str
    webhook_hmac_secret: str
    run_lease_grace_seconds: int
    worker_heartbeat_seconds: int
    worker_offline_after_seconds: int
    secret_key: str
    debug: bool
    allowed_hosts: list[str]
    data_dir: Path
    # Observability (scheduler_project.logs, .metrics, .health).
    log_format: str = "json"
    ready_require: tuple[str, ...] = ("database", "broker", "nats", "beat")
    metrics_dir: Path | None = None
    # Where Celery workers, beats and the event consumer serve their own metrics (None: they don't).
    metrics_port: int | None = None
    metrics_addr: str = "0.0.0.0"

    @property
    def embedded(self) -> bool:
        """True when running without PostgreSQL and Redis (SQLite + filesystem broker)."""
        return self.redis_url is None and self.database["ENGINE"].endswith("sqlite3")


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    value = _get(env, name)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError as exc:
        raise ConfigError(name, f"not a valid URL ({exc})") from None
    if parts.scheme not in schemes:
        expected = ", ".join(f"{s}://" for s in schemes)
        raise ConfigError(name, f"must start with {expected} (got {value!r})")
    if not parts.hostname and parts.scheme not in {"sqlite"}:
        raise ConfigError(name, f"has no host (got {value!r})")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(name, f"must be true or false (got {value!r})")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int, what: str = "a whole number") -> int:
    value = _get(env, name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ConfigError(name, f"must be {what} {low}-{high} (got {value!r})")
    return int(value)


def _stream_name(env: Mapping[str, str]) -> str | None:
    value = _get(env, "NATS_EVENTS_STREAM")
    if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ConfigError("NATS_EVENTS_STREAM", f"must be 1-64 letters, digits, - or _ (got {value!r})")
    return value


def _events_source(env: Mapping[str, str]) -> str:
    value = _get(env, "EVENTS_SOURCE") or "/scheduler"
    if len(value) > 200 or re.search(r"\s", value):
        raise ConfigError("EVENTS_SOURCE", f"must be a URI reference of at most 200 characters (got {value!r})")
    return value


def _worker_liveness(env: Mapping[str, str]) -> tuple[int, int]:
    """How often a worker sends a heartbeat, and how long one may be missing before the worker
    is declared offline: a few heartbeats must fit in that window, or a slow one is a false alarm."""
    heartbeat = _int(env, "WORKER_HEARTBEAT_SECONDS", 10, 1, 3600, "seconds")
    offline_after = _int(env, "WORKER_OFFLINE_AFTER_SECONDS", 60, 2, 86400, "seconds")
    if offline_after < 2 * heartbeat:
        raise ConfigError(
            "WORKER_OFFLINE_AFTER_SECONDS",
            f"must be at least twice WORKER_HEARTBEAT_SECONDS ({heartbeat}), got {offline_after}",
        )
    return heartbeat, offline_after


def _port(env: Mapping[str, str]) -> int:
    return _int(env, "PORT", 3080, 1, 65535, "a port number")


def _timezone(env: Mapping[str, str]) -> str:
    value = _get(env, "DEFAULT_TZ") or "Europe/Berlin"
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("DEFAULT_TZ", f"unknown IANA time zone {value!r}") from None
    return value


def _database(env: Mapping[str, str], data_dir: Path) -> dict[str, Any]:
    url = _url(env, "POSTGRES_URL", ("postgres", "postgresql"))
    pooled = _bool(env, "POSTGRES_TRANSACTION_POOLING", default=False)
    if url is None:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(data_dir / "scheduler.sqlite3"),
            # SQLite serialises writers; wait instead of failing while beat and worker write.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    try:
        database = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        raise ConfigError("POSTGRES_URL", f"not a valid database URL ({exc})") from None
    if not database.get("NAME"):
        raise ConfigError("POSTGRES_URL", f"names no database (got {url!r})")
    # Behind a pooler that hands a session to another client after each transaction (PgBouncer's
    # transaction mode), nothing may outlive a transaction: no server-side cursors, and no
    # prepared statements (runs.services prepares its claim and finish once per session otherwise).
    if pooled:
        database["DISABLE_SERVER_SIDE_CURSORS"] = True
    return dict(database)


def _broker(redis_url: str | None, data_dir: Path) -> tuple[str, dict[str, Any]]:
    if redis_url is not None:
        # A message not acknowledged within the visibility timeout is delivered again; it must
        # exceed the longest task time limit, see docs/decisions.md.
        # https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout
        return redis_url, {"visibility_timeout": 3600}
    # kombu's filesystem transport: a broker that is just a folder, shared by every process
    # on this machine. Good for the embedded default, not for production.
    folder = data_dir / "broker"
    for sub in ("out", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return "filesystem://", {
        "data_folder_in": str(folder / "out"),
        "data_folder_out": str(folder / "out"),
        "processed_folder": str(folder / "processed"),
        # Exchange bindings; kombu's default is "control" in the working directory.
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }


def _secret_key(env: Mapping[str, str], data_dir: Path, embedded: bool) -> str:
    value = _get(env, "SECRET_KEY")
    if value is not None:
        if len(value) < 32:
            raise ConfigError("SECRET_KEY", "must be at least 32 characters long")
        return value
    if not embedded:
        raise ConfigError("SECRET_KEY", "must be set when POSTGRES_URL or REDIS_URL is set")
    # Embedded default: a random key made once and kept beside the SQLite file, so every
    # process of this installation (API, beat, worker, issue_token) signs with the same key.
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


LOG_FORMATS = ("json", "console")
READY_CHECKS = ("database", "broker", "nats", "beat", "workers")


def _log_format(env: Mapping[str, str]) -> str:
    value = (_get(env, "LOG_FORMAT") or "json").lower()
    if value not in LOG_FORMATS:
        raise ConfigError("LOG_FORMAT", f"must be one of {', '.join(LOG_FORMATS)} (got {value!r})")
    return value


def _ready_require(env: Mapping[str, str]) -> tuple[str, ...] | None:
    """The readiness checks whose failure answers 503; None: the default."""
    value = _get(env, "READY_REQUIRE")
    if value is None:
        return None
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = sorted(set(names) - set(READY_CHECKS))
    if unknown or not names:
        raise ConfigError("READY_REQUIRE", f"must name checks among {', '.join(READY_CHECKS)} (got {value!r})")
    return tuple(dict.fromkeys(names))


def _metrics_dir(env: Mapping[str, str]) -> Path | None:
    """prometheus_client's multiprocess directory (it reads the variable itself, in every process):
    created when missing, so that a typo fails at start-up rather than at the first metric."""
    value = _get(env, "PROMETHEUS_MULTIPROC_DIR")
    if value is None:
        return None
    path = Path(value)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("PROMETHEUS_MULTIPROC_DIR", f"cannot create {value!r} ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError("PROMETHEUS_MULTIPROC_DIR", f"{value!r} is not a writable directory")
    return path


def _metrics_listen(env: Mapping[str, str]) -> tuple[int | None, str]:
    """The port (and address) on which a worker, beat or consumer process serves its metrics:
    for deployments where those processes do not share ``PROMETHEUS_MULTIPROC_DIR`` with the API."""
    port = _int(env, "METRICS_PORT", 0, 1, 65535, "a port number") or None
    addr = _get(env, "METRICS_ADDR") or "0.0.0.0"
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise ConfigError("METRICS_ADDR", f"must be an IP address to listen on (got {addr!r})") from None
    return port, addr


def load(env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration; raise :class:`ConfigError` on the first bad value."""
    env = os.environ if env is None else env
    data_dir = Path(_get(env, "DATA_DIR") or BASE_DIR / ".data").resolve()
    database = _database(env, data_dir)
    redis_url = _url(env, "REDIS_URL", ("redis", "rediss"))
    broker_url, broker_options = _broker(redis_url, data_dir)
    embedded = redis_url is None and database["ENGINE"].endswith("sqlite3")
    hosts = _get(env, "ALLOWED_HOSTS")
    heartbeat_seconds, offline_after_seconds = _worker_liveness(env)
    metrics_port, metrics_addr = _metrics_listen(env)
    return Config(
        port=_port(env),
        database=database,
        broker_url=broker_url,
        broker_transport_options=broker_options,
        redis_url=redis_url,
        nats_url=_url(env, "NATS_URL", ("nats", "tls")),
        nats_events_stream=_stream_name(env),
        events_source=_events_source(env),
        jwks_url=_url(env, "JWKS_URL", ("http", "https")),
        jwt_audience=_get(env, "JWT_AUDIENCE"),
        jwt_issuer=_get(env, "JWT_ISSUER"),
        default_tz=_timezone(env),
        webhook_hmac_secret=_get(env, "WEBHOOK_HMAC_SECRET") or "",
        run_lease_grace_seconds=_int(env, "RUN_LEASE_GRACE_SECONDS", 30, 1, 3600, "seconds"),
        worker_heartbeat_seconds=heartbeat_seconds,
        worker_offline_after_seconds=offline_after_seconds,
        secret_key=_secret_key(env, data_dir, embedded),
        debug=_bool(env, "DEBUG", default=False),
        allowed_hosts=[h.strip() for h in hosts.split(",") if h.strip()]
        if hosts
        else ["localhost", "127.0.0.1", "[::1]"],
        data_dir=data_dir,
        log_format=_log_format(env),
        ready_require=_ready_require(env) or Config.ready_require,
        metrics_dir=_metrics_dir(env),
        metrics_port=metrics_port,
        metrics_addr=metrics_addr,
    )
