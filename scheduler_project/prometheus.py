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
"""

from __future__ import annotations

import os
import re
import socket

from prometheus_client import multiprocess, values

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
