"""Which Celery queue a run goes to, and which queues a worker consumes.

A job names a ``queue`` and may require worker ``capabilities`` ("gpu", "eu"). A job with no
requirement goes to its queue as it is; one with requirements goes to ``<queue>@<caps>`` with the
capabilities sorted and joined by ``+`` (``reports@eu+gpu``). A worker started with capabilities
consumes, for each of its queues, the plain queue and one queue per non-empty subset of its
capabilities, so a run lands only on workers that have everything it needs, through nothing but
Celery's own queues.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

# 2**8 - 1 = 255 capability queues per base queue: more would be a routing table, not a worker.
MAX_WORKER_CAPABILITIES = 8


def run_queue(queue: str, capabilities: Iterable[str]) -> str:
    caps = sorted(set(capabilities))
    return f"{queue}@{'+'.join(caps)}" if caps else queue


def worker_queues(queues: Iterable[str], capabilities: Iterable[str]) -> list[str]:
    caps = sorted(set(capabilities))
    if len(caps) > MAX_WORKER_CAPABILITIES:
        raise ValueError(f"a worker may declare at most {MAX_WORKER_CAPABILITIES} capabilities, got {len(caps)}")
    subsets = [combo for size in range(1, len(caps) + 1) for combo in combinations(caps, size)]
    names: list[str] = []
    for queue in queues:
        names.append(queue)
        names.extend(run_queue(queue, combo) for combo in subsets)
    return names
