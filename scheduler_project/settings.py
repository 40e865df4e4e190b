"""Django settings. Every value that differs between deployments comes from the environment
through :mod:`scheduler_project.config`; see the configuration table in the README."""

from __future__ import annotations

import sys
from datetime import timedelta

from scheduler_project import config, logs, tracing

try:
    CONFIG = config.load()
    # The OTEL_* variables (scheduler_project/tracing.py): read here too, so that a value tracing
    # cannot honour stops every process at start rather than a worker's pool process later.
    TRACING_EXPORTERS = tracing.tracing_exporters()
except config.ConfigError as exc:
    # One clear line naming the variable, instead of a traceback from deep inside a driver.
    sys.exit(f"configuration error: {exc}")

BASE_DIR = config.BASE_DIR
SECRET_KEY = CONFIG.secret_key
DEBUG = CONFIG.debug
ALLOWED_HOSTS = CONFIG.allowed_hosts
PORT = CONFIG.port
DEFAULT_TZ = CONFIG.default_tz
NATS_URL = CONFIG.nats_url
NATS_EVENTS_STREAM = CONFIG.nats_events_stream
EVENTS_SOURCE = CONFIG.events_source
REDIS_URL = CONFIG.redis_url
JWKS_URL = CONFIG.jwks_url
JWT_AUDIENCE = CONFIG.jwt_audience
JWT_ISSUER = CONFIG.jwt_issuer
WEBHOOK_HMAC_SECRET = CONFIG.webhook_hmac_secret
EMBEDDED = CONFIG.embedded

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "django_celery_beat",
    "scheduler_project.apps.CoreConfig",
    "calendars",
    "schedules",
    "runs",
    "workers",
    "subscriptions",
]

MIDDLEWARE = [
    # First: its request id, timing and "request" log line cover everything below.
    "scheduler_project.middleware.RequestObservabilityMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and API docs' static files from the same process (no extra web server).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "scheduler_project.urls"
WSGI_APPLICATION = "scheduler_project.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": CONFIG.database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Everything is stored and computed in UTC; schedules carry their own IANA zone.
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = CONFIG.data_dir / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# A request body above this is refused before it is parsed (413); single JSON fields have
# their own, smaller limits and answer 400 naming the field.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# Every process logs through structlog: JSON lines (LOG_FORMAT=console for a terminal), each with
# the tenant, run, job, schedule and trace ids its context knows (scheduler_project/logs.py).
# Celery's processes apply the same through the setup_logging signal (scheduler_project/celery.py).
LOGGING_CONFIG = "scheduler_project.logs.configure"
LOGGING = logs.logging_config(CONFIG.log_format)

# --- Observability ----------------------------------------------------------------------------
# /readyz answers 503 when one of these checks fails; the others are reported only (README).
READY_REQUIRE = CONFIG.ready_require
# prometheus_client's multiprocess directory, shared by the API, workers and beats (None: each
# process has its own registry, and /metrics shows the API process's); see scheduler_project/prometheus.py.
PROMETHEUS_MULTIPROC_DIR = str(CONFIG.metrics_dir) if CONFIG.metrics_dir else None
# /metrics labels the running and waiting runs of at most this many jobs, and reads the depth of
# at most this many broker queues: a scrape's cost and series stay bounded (scheduler_project/scrape.py).
METRICS_TOP_JOBS = 20
METRICS_MAX_QUEUES = 100
# Workers, beats and the event consumer serve their own metrics on this port when set (a pod of its
# own cannot reach the API's multiprocess directory); scheduler_project/prometheus.py.
METRICS_PORT = CONFIG.metrics_port
METRICS_ADDR = CONFIG.metrics_addr

# --- REST API -------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["scheduler_project.api.authentication.TenantJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["scheduler_project.api.permissions.ScopePermission"],
    "DEFAULT_PARSER_CLASSES": ["scheduler_project.api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "scheduler_project.api.pagination.PageNumberPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "scheduler_project.api.exceptions.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "PAGE_SIZE": 50,
}

JWT_LEEWAY_SECONDS = 30  # clock skew tolerated between the identity provider and us
# Tokens come from the tenants' identity provider (RS256 via JWKS_URL) or, without one, are
# HS256 tokens signed with SECRET_KEY (`manage.py issue_token`). They carry `tenant_id` and
# `scope`; no user row exists for them, so the user-id and token-type claims are not required.
SIMPLE_JWT = {
    "ALGORITHM": "RS256" if JWKS_URL else "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "JWK_URL": JWKS_URL,
    "AUDIENCE": JWT_AUDIENCE,
    "ISSUER": JWT_ISSUER,
    "LEEWAY": JWT_LEEWAY_SECONDS,
    "ACCESS_TOKEN_LIFETIME": timedelta(hours=12),
    "TOKEN_TYPE_CLAIM": None,
    "JTI_CLAIM": None,
    "USER_ID_CLAIM": "sub",
    "AUTH_HEADER_TYPES": ("Bearer",),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Scheduler API",
    "DESCRIPTION": (
        "Multi-tenant scheduler: jobs, schedules, runs, calendars and workers. "
        "Authenticate with `Authorization: Bearer <JWT>` carrying `tenant_id` and `scope` claims."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "scheduler_project.api.schema.strip_trailing_slashes",
    ],
    "ENUM_NAME_OVERRIDES": {
        "RunStatus": "runs.models.RunStatus",
        "WorkerStatus": "workers.models.WorkerStatus",
        "RunKind": "runs.models.RunKind",
        "NonBusinessDayKind": "calendars.engine.Closure",
        # Also the `policy` of the explain endpoint's misfire and overlap objects.
        "MisfirePolicyEnum": "schedules.models.MisfirePolicy",
        "OverlapPolicyEnum": "schedules.models.OverlapPolicy",
    },
}

# --- Celery ---------------------------------------------------------------------------------
# Every setting: https://docs.celeryq.dev/en/stable/userguide/configuration.html

CELERY_BROKER_URL = CONFIG.broker_url
# Redis: visibility_timeout above the longest task time limit, so a running task is not
# delivered a second time. Filesystem: where the embedded broker keeps its messages.
CELERY_BROKER_TRANSPORT_OPTIONS = CONFIG.broker_transport_options
# Retry the broker connection at start-up rather than crash-looping the container.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# JSON only: never unpickle what arrives over the network.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
# Run state lives in our own tables; Celery result storage would be a second, weaker copy.
CELERY_TASK_IGNORE_RESULT = True
# Long tasks and fair dispatch: a worker process reserves one message at a time.
# https://docs.celeryq.dev/en/stable/userguide/optimizing.html#prefetch-limits
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Keep a worker's database connection between tasks (Celery's Django fixup closes it around
# every task otherwise, and reconnecting cost 4 ms a run); scheduler_project/celery.py recycles it
# the way Django does between requests instead: CONN_MAX_AGE and health checks.
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# The database-driven beat (schedules/beat.py): any number may run; one leads (lease) and also
# serves django-celery-beat's periodic tasks.
CELERY_BEAT_SCHEDULER = "schedules.beat:Scheduler"
# The longest a beat sleeps between ticks. PostgreSQL wakes it early on a change (LISTEN);
# without PostgreSQL this bounds how late a new schedule is seen.
CELERY_BEAT_MAX_LOOP_INTERVAL = 5
# Seconds a beat's leader lease lives without renewal: a standby takes over this long after the
# leader dies. Runs QUEUED or never sent for this long are enqueued again by the sweeper.
BEAT_LEASE_SECONDS = 10
RUN_REQUEUE_AFTER_SECONDS = 600
# A RUNNING run's lease is its job's timeout_seconds plus this grace. A run whose worker died is
# taken back by the beat leader once the lease has run out, and retried per its job's backoff.
RUN_LEASE_GRACE_SECONDS = CONFIG.run_lease_grace_seconds
# Workers (workers.services): a heartbeat every WORKER_HEARTBEAT_SECONDS; one silent for
# WORKER_OFFLINE_AFTER_SECONDS is marked OFFLINE by the beat leader and its running runs are
# retried at once. A heartbeat writes an event only when it changes the worker's status, or when
# it is the worker's first in a window of WORKER_HEARTBEAT_EVENT_SECONDS (a sample, not a flood).
WORKER_HEARTBEAT_SECONDS = CONFIG.worker_heartbeat_seconds
WORKER_OFFLINE_AFTER_SECONDS = CONFIG.worker_offline_after_seconds
WORKER_HEARTBEAT_EVENT_SECONDS = 300
# OFFLINE workers not heard from for this many days are deleted by the beat leader (0: never);
# their attempts keep the worker's name.
WORKER_RETENTION_DAYS = 7
# A bulk replay (POST /runs/replay, the admin action) retries at most this many runs at once.
RUN_REPLAY_MAX_RUNS = 1000
# A backfill request may cover at most this many slots.
BACKFILL_MAX_SLOTS = 1000

# --- Domain events (docs/events.md) -----------------------------------------------------------
# The outbox relay publishes this many events per transaction, oldest first, and waits this long
# for NATS to acknowledge each. The beat leader runs it on a thread of its own every
# OUTBOX_RELAY_INTERVAL_SECONDS (at once again while a backlog remains; backing off up to
# OUTBOX_RELAY_MAX_BACKOFF_SECONDS while NATS fails); `manage.py relay_events` is the same loop
# as a process of its own, for which OUTBOX_RELAY_IN_BEAT may be turned off.
OUTBOX_RELAY_BATCH = 200
OUTBOX_RELAY_TIMEOUT_SECONDS = 5.0
OUTBOX_RELAY_INTERVAL_SECONDS = 1.0
OUTBOX_RELAY_MAX_BACKOFF_SECONDS = 30.0
OUTBOX_RELAY_IN_BEAT = True
# A stream the relay creates (NATS_EVENTS_STREAM) keeps events this long.
NATS_EVENTS_STREAM_MAX_AGE_DAYS = 7
# Published events older than this are deleted by the relay's loop once an hour (0: never);
# schedule events are kept, because a schedule's explain reads its pause history from them.
OUTBOX_RETENTION_DAYS = 30
