"""gunicorn settings for the API: ``gunicorn -c python:scheduler_project.gunicorn_conf scheduler_project.wsgi``.

gunicorn's own lines (start-up, worker restarts, errors) are rendered like the application's
(scheduler_project.logs); its access lines are dropped, because the request middleware writes
one structured "request" line per request. A worker that exits has its live gauges removed from
the Prometheus multiprocess directory. Tracing is set up in each worker after the fork
(``post_fork``), never in the master: the span exporter's thread belongs to the process that
sends the spans.
"""

from __future__ import annotations

import sys as _sys
from typing import Any as _Any

# Every module-level name here is read as a gunicorn setting ("config" is one): keep imports private.
from scheduler_project import config as _config
from scheduler_project import logs as _logs
from scheduler_project import prometheus as _prometheus
from scheduler_project import tracing as _tracing

try:
    _settings = _config.load()
    _tracing.tracing_exporters()  # a bad OTEL_* value stops the master, not each worker in turn
except _config.ConfigError as exc:
    _sys.exit(f"configuration error: {exc}")

logconfig_dict = _logs.logging_config(_settings.log_format)


def child_exit(server: _Any, worker: _Any) -> None:
    _prometheus.mark_process_dead(worker.pid)


def post_fork(server: _Any, worker: _Any) -> None:
    _tracing.tracing_configure("scheduler-api")
