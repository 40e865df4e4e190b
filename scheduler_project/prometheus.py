"""prometheus_client's multiprocess mode, shared by gunicorn, Celery workers and beats.

With ``PROMETHEUS_MULTIPROC_DIR`` set, every process writes its counters and histograms to
memory-mapped files in that directory, and ``/metrics`` adds up the files of all of them: the
API's gunicorn workers, the Celery pool processes and the beats, as long as they share the
directory (one host, or one volume). Without it each process keeps its own in-memory registry
and ``/metrics`` shows the API process's alone.

A file is named after its process. prometheus_client uses the pid, which is not unique across
containers sharing a volume (each has its own pid 1, 7, 8, ...), so the name here is
``<hostname>-<pid>``. The directory must be emptied when the processes that write it start
afresh (``scripts/serve``, the compose file's ``migrate`` job), never while they run.

Where processes cannot share the API's directory (a Kubernetes pod each), ``METRICS_PORT`` makes a
worker, beat or event consumer serve its own metrics (:func:`serve`): the events of the processes
writing its directory (a worker's pool processes), or its own registry. The gauges read from the
database at scrape time stay the API's alone (:mod:`scheduler_project.scrape`), so that summing
the pods counts each fact once.
"""

from __future__ import annotations

import logging
import os
import re
import socket

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server, values
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Underscores split a file name into its parts: keep them out of the host part.
_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"


def directory() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def process_identifier(pid: int | None = None) -> str:
    """This process's (or ``pid``'s, on this host) name in the metrics files."""
    return f"{_HOST}-{os.getpid() if pid is None else pid}"


def install() -> None:
    """Name metric files ``<host>-<pid>``. Must run before the first metric is created."""
    if directory():
        values.ValueClass = values.MultiProcessValue(process_identifier=process_identifier)
    else:
        # prometheus_client turns multiprocess mode on for a variable that is set but empty, and
        # writes to the working directory: empty means off here.
        values.ValueClass = values.MutexValue


def mark_process_dead(pid: int) -> None:
    """Drop a dead process's live gauges (gunicorn's ``child_exit``); its counters stay summed."""
    path = directory()
    if path:
        multiprocess.mark_process_dead(process_identifier(pid), path)


def events_registry() -> Collector:
    """The events the processes recorded: every process's files in the multiprocess directory,
    or this process's own registry without one."""
    path = directory()
    if not path:
        return REGISTRY
    files = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(files, path=path)
    return files


def serve(*, port: int, addr: str, process: str) -> bool:
    """Serve :func:`events_registry` at ``http://addr:port/metrics`` from a daemon thread. A port
    already taken is logged, not raised: a process must not die because its metrics cannot be served."""
    try:
        start_http_server(port, addr, registry=events_registry())
    except OSError as exc:
        logger.error("%s: cannot serve metrics on %s:%d (%s)", process, addr, port, exc.strerror or exc)
        return False
    logger.info("%s: serving metrics on http://%s:%d/metrics", process, addr, port)
    return True
