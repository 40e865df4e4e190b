"""Structured logs: one configuration for the API, the beat and the workers.

Every line is rendered by structlog, whether it comes from ``structlog.get_logger()`` or from a
plain ``logging.getLogger(__name__)`` (Django, Celery, gunicorn and our own modules): JSON by
default, or key=value lines for a person at a terminal (``LOG_FORMAT=console``). Each line
carries what the context knows, from :mod:`structlog.contextvars`:

- API requests: ``request_id`` (the ``X-Request-ID`` header, or a new one), ``method``, ``path``,
  and ``tenant_id`` once the token is verified (``TenantViewSet.perform_authentication``);
- run execution: ``run_id``, ``task_id``, ``tenant_id``, ``job``, ``schedule_id``
  (``runs.tasks.execute_run``);
- ``trace_id`` and ``span_id`` of the current OpenTelemetry span, when OpenTelemetry is
  installed and a span is recording (optional: nothing here depends on it).

Django applies :func:`logging_config` through ``settings.LOGGING_CONFIG``; Celery processes
apply the same through the ``setup_logging`` signal (``scheduler_project.celery``), so Celery
adds no handlers of its own.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor

try:  # OpenTelemetry is optional: trace ids appear in the logs once it is installed.
    from opentelemetry import trace as otel_trace
except ImportError:  # pragma: no cover - depends on the environment
    otel_trace = None  # type: ignore[assignment]

LOG_FORMATS = ("json", "console")


def add_trace_ids(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """``trace_id``/``span_id`` (hex, as W3C traceparent writes them) of the current span."""
    if otel_trace is None:
        return event_dict
    context = otel_trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


def _shared_processors() -> list[Processor]:
    """What every line gets, from structlog and from the standard library alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
    ]


def _renderer(log_format: str) -> list[Processor]:
    if log_format == "console":
        # Colours only for a terminal: a log file or a pipe gets plain text.
        return [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    return [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,  # the traceback as one string field
        structlog.processors.UnicodeDecoder(),
        structlog.processors.JSONRenderer(default=str),
    ]


def formatter(log_format: str = "json") -> structlog.stdlib.ProcessorFormatter:
    """The ``logging.Formatter`` that renders every record (``LOGGING``'s ``()`` factory)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_renderer(log_format)],
    )


def logging_config(log_format: str = "json", level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document: one stream handler on the root logger, rendering
    through structlog. Existing loggers stay enabled (Celery's are created before this runs)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": "scheduler_project.logs.formatter", "log_format": log_format}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's default configuration gives these handlers of their own (plain text, or
            # mail to ADMINS); everything goes through the root's instead.
            "django": {"handlers": [], "propagate": True},
            "django.server": {"handlers": [], "propagate": True},
            # gunicorn's loggers have handlers of their own; let them reach ours instead. Its
            # access lines repeat, unstructured, the "request" line of RequestLogMiddleware.
            "gunicorn.error": {"handlers": [], "propagate": True},
            "gunicorn.access": {"handlers": [], "propagate": True, "level": "WARNING"},
        },
    }


def configure(config: MutableMapping[str, Any] | None = None, *, level: int | str | None = None) -> None:
    """Apply ``config`` (a ``LOGGING`` document) and point structlog at the standard library.

    Django calls this once per process through ``LOGGING_CONFIG``; Celery's ``setup_logging``
    signal calls it again with the worker's or beat's ``--loglevel``. Idempotent.
    """
    if config:
        logging.config.dictConfig(dict(config))
    if level is not None:
        logging.getLogger().setLevel(level)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
