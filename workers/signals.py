"""Celery worker signals: capability queues, and the worker's life in the registry.

``WORKER_CAPABILITIES=gpu,eu celery -A scheduler_project worker -Q default,reports`` consumes
``default``, ``reports`` and their capability queues (``default@eu``, ``default@eu+gpu``, ...)
(runs.routing), and registers itself as a worker of the shared fleet named after its Celery
hostname; :mod:`workers.heartbeat` keeps the registration alive until a clean shutdown.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import celery
from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown

from runs.routing import worker_queues
from workers import heartbeat


def worker_capabilities(env: dict[str, str] | None = None) -> list[str]:
    raw = (os.environ if env is None else env).get("WORKER_CAPABILITIES", "")
    return sorted({part.strip() for part in raw.split(",") if part.strip()})


@celeryd_after_setup.connect
def add_capability_queues(sender: str, instance: Any, conf: Any, **kwargs: Any) -> None:
    """Consume the capability queues of the worker's queues, then register the worker: before
    the pool starts and before anything is consumed, so a run this process claims is never
    mistaken for one of a previous process under the same name."""
    capabilities = worker_capabilities()
    queues = instance.app.amqp.queues
    base = list(queues.consume_from) if queues.consume_from else [conf.task_default_queue]
    consumes = worker_queues(base, capabilities)
    for name in consumes:
        if name not in base:
            queues.select_add(name)
    heartbeat.current = heartbeat.CeleryWorkerHeartbeat(
        name=sender,
        hostname=socket.gethostname(),
        queues=base,
        consumes=consumes,
        capabilities=capabilities,
        concurrency=int(getattr(instance, "max_concurrency", None) or instance.concurrency or 1),
        version=f"celery {celery.__version__}",
    )
    heartbeat.current.register()


@worker_ready.connect
def start_heartbeat(sender: Any, **kwargs: Any) -> None:
    if heartbeat.current is not None:
        heartbeat.current.start(consumer=sender)


@worker_shutdown.connect
def mark_offline(sender: Any, **kwargs: Any) -> None:
    if heartbeat.current is not None:
        heartbeat.current.stop()
