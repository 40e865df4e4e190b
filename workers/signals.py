"""Celery worker set-up: the queues a worker consumes follow its capabilities (runs.routing).

``WORKER_CAPABILITIES=gpu,eu celery -A scheduler_project worker -Q default,reports`` consumes
``default``, ``reports`` and their capability queues (``default@eu``, ``default@eu+gpu``, ...).
"""

from __future__ import annotations

import os
from typing import Any

from celery.signals import celeryd_after_setup

from runs.routing import worker_queues


def worker_capabilities(env: dict[str, str] | None = None) -> list[str]:
    raw = (os.environ if env is None else env).get("WORKER_CAPABILITIES", "")
    return sorted({part.strip() for part in raw.split(",") if part.strip()})


@celeryd_after_setup.connect
def add_capability_queues(sender: str, instance: Any, conf: Any, **kwargs: Any) -> None:
    capabilities = worker_capabilities()
    if not capabilities:
        return
    queues = instance.app.amqp.queues
    base = list(queues.consume_from) if queues.consume_from else [conf.task_default_queue]
    for name in worker_queues(base, capabilities):
        if name not in base:
            queues.select_add(name)
