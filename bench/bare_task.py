"""The baseline of bench/execution.py: a bare Celery task doing the HTTP call a run makes.

Registered on the benchmark's worker with ``--include bench.bare_task``. It sends the same POST
as ``runs.targets.http.deliver`` (the same bytes, the same headers, a keep-alive ``requests``
session per process that does not read the environment for each request, the whole answer
read) with the same task options as ``runs.execute_run`` (``acks_late``,
``reject_on_worker_lost``, no result), and nothing else: no database, no state, no attempt, no
event.

With ``BENCH_EXEC_PROFILE=<folder>`` in the worker's environment each pool process runs under
cProfile and counts its SQL statements (kind and table, count and time); both are written to
that folder when the process ends (``<pid>.prof``, ``<pid>.sql.json``), for the ``--profile`` of
bench/execution.py.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from typing import Any

import requests
from celery import shared_task
from celery.signals import worker_process_init, worker_process_shutdown

BARE_TASK = "bench.bare_post"
_session: requests.Session | None = None


@shared_task(name=BARE_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def bare_post(key: str, url: str, body: dict[str, Any]) -> int:
    global _session
    if _session is None:
        _session = requests.Session()
        _session.trust_env = False  # as the HTTP target's session: the environment read once, not per request
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "User-Agent": "scheduler-webhook/1",
        "Content-Type": "application/json",
        "Idempotency-Key": key,
        "X-Scheduler-Run-Id": key,
    }
    with _session.post(url, data=data, headers=headers, timeout=(10, 10), allow_redirects=False) as response:
        response.content  # noqa: B018 - read the answer, as the run's delivery does
        return response.status_code


# --- profiling, when asked ------------------------------------------------------------------------

_PROFILE: dict[str, Any] = {}


def _statement_kind(sql: str) -> str:
    """``UPDATE runs_run``, ``SELECT runs_run``, ``INSERT outbox_event``: what a statement does to what."""
    words = sql.replace('"', "").split()
    verb = words[0].upper() if words else "?"
    table = ""
    marker = {"INSERT": "INTO", "UPDATE": None, "DELETE": "FROM", "SELECT": "FROM"}.get(verb, "")
    if verb == "UPDATE" and len(words) > 1:
        table = words[1]
    elif marker:
        upper = [w.upper() for w in words]
        if marker in upper:
            table = words[upper.index(marker) + 1]
    if verb == "SELECT" and " FOR UPDATE" in sql.upper():
        verb = "SELECT FOR UPDATE"
    return f"{verb} {table}".strip()


@worker_process_init.connect
def _profile_start(**_: Any) -> None:
    folder = os.environ.get("BENCH_EXEC_PROFILE")
    if not folder:
        return
    import cProfile

    from django.db import connection

    counts: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            entry = counts[_statement_kind(sql)]
            entry[0] += 1
            entry[1] += time.perf_counter() - start

    # What connection.execute_wrapper() installs, for the whole life of the process.
    connection.execute_wrappers.append(count)
    profiler = cProfile.Profile()
    _PROFILE.update(folder=folder, profiler=profiler, counts=counts)
    profiler.enable()


@worker_process_shutdown.connect
def _profile_stop(**_: Any) -> None:
    profiler = _PROFILE.get("profiler")
    if profiler is None:
        return
    profiler.disable()
    folder = _PROFILE["folder"]
    profiler.dump_stats(os.path.join(folder, f"{os.getpid()}.prof"))
    with open(os.path.join(folder, f"{os.getpid()}.sql.json"), "w") as out:
        json.dump(_PROFILE["counts"], out)


# --- reconnecting for every task, when asked ------------------------------------------------------

if os.environ.get("BENCH_EXEC_RECONNECT"):
    # What Celery's Django fixup does without CELERY_DB_REUSE_MAX (the project sets it): close every
    # database connection before and after each task, so that each task connects anew, to a new
    # PostgreSQL backend with cold caches.
    from celery.fixups.django import DjangoWorkerFixup

    def _always_close(self: DjangoWorkerFixup, **_: Any) -> None:
        self._close_database()

    DjangoWorkerFixup.close_database = _always_close  # type: ignore[method-assign]
