"""What the broker holds: how many messages wait in a queue.

Read on Redis only (``LLEN``), the broker of every deployment; the embedded filesystem broker
answers None. Used by ``/metrics`` (queue depth gauges) and by the sweeper, which leaves alone
the runs of a queue that still holds messages (their message is most likely among them).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    import redis

# kombu's Redis transport keeps a queue's prioritised messages in lists of their own.
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


@functools.cache
def _redis(url: str) -> redis.Redis:
    # Imported here: redis-py imports OpenTelemetry's SDK with it, which a process with tracing
    # off must not load (tests/unit/test_tracing.py).
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def queue_depths(queues: Iterable[str]) -> dict[str, int] | None:
    """Messages waiting (not yet delivered to a worker) in each queue, in one pipelined round
    trip; None when the broker is not Redis. Raises ``redis.RedisError`` when it cannot be read."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        return None
    names = list(dict.fromkeys(queues))
    if not names:
        return {}
    pipe = _redis(url).pipeline(transaction=False)
    for queue in names:
        pipe.llen(queue)
        for step in _PRIORITY_STEPS:
            pipe.llen(f"{queue}{_PRIORITY_SEPARATOR}{step}")
    lengths = pipe.execute()
    per_queue = 1 + len(_PRIORITY_STEPS)
    return {queue: sum(lengths[i * per_queue : (i + 1) * per_queue]) for i, queue in enumerate(names)}
