"""Target type → the function that delivers to it."""

from __future__ import annotations

from runs.targets import event, http, queue
from runs.targets.base import Delivery, FatalError, Receipt, Target

TARGETS: dict[str, Target] = {"HTTP": http.deliver, "EVENT": event.deliver, "QUEUE": queue.deliver}


def deliver(delivery: Delivery) -> Receipt:
    kind = delivery.target.get("type")
    target = TARGETS.get(kind) if isinstance(kind, str) else None
    if target is None:
        raise FatalError(f"unknown target type {kind!r}", error_type="InvalidTarget")
    return target(delivery)
