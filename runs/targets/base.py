"""The one small interface every target type implements.

A target receives a :class:`Delivery` — everything it needs, already read from the database —
and either returns a :class:`Receipt` (delivered) or raises a :class:`DeliveryError` saying
whether trying again could help. Targets know nothing of runs, attempts or retries: the run
services decide what an outcome means. Each target enforces ``Delivery.deadline`` itself, so
the job's ``timeout_seconds`` holds whatever the worker's pool.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Delivery:
    run_id: str
    tenant_id: str
    job_key: str
    target: dict[str, Any]
    # The document sent: run metadata and the payload (see runs.services.run_body).
    body: dict[str, Any]
    # time.monotonic() by which the delivery must have finished.
    deadline: float
    # HMAC secret for signing (HTTP); empty: unsigned.
    secret: str = ""
    # Extra headers for the target (trace context and the like).
    headers: dict[str, str] = field(default_factory=dict)

    def remaining(self) -> float:
        """Seconds left before the deadline; raises :class:`DeliveryTimeout` when none are."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeliveryTimeout("the job's timeout ran out before the target answered")
        return left


@dataclass(frozen=True)
class Receipt:
    """What the target answered, kept on the attempt."""

    status: int | None = None
    latency_ms: int | None = None
    excerpt: str = ""
    # Target-specific facts worth keeping on the run (a JetStream sequence, a message id).
    detail: dict[str, Any] = field(default_factory=dict)


class DeliveryError(Exception):
    """The target did not take the delivery. ``retryable`` says whether another attempt may."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        latency_ms: int | None = None,
        excerpt: str = "",
        retry_after: float | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.latency_ms = latency_ms
        self.excerpt = excerpt
        self.retry_after = retry_after
        # The class of the underlying error (``ConnectionError``), when more telling than ours.
        self.error_type = error_type or type(self).__name__


class RetryableError(DeliveryError):
    retryable = True


class FatalError(DeliveryError):
    """Trying again would fail the same way: a 4xx, a malformed target."""

    retryable = False


class DeliveryTimeout(RetryableError):
    """The job's ``timeout_seconds`` ran out."""


class Target(Protocol):
    def __call__(self, delivery: Delivery) -> Receipt: ...
