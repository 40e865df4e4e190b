"""The HTTP target: one signed JSON request per attempt.

2xx delivers. 408, 429, 5xx and network errors are worth another attempt (``Retry-After``
honoured); any other status fails at once: a 4xx means the request itself is wrong, and
redirects are not followed (a webhook that moved is a configuration error to fix, not to guess).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests

from runs.targets.base import Delivery, DeliveryTimeout, FatalError, Receipt, RetryableError
from runs.targets.signing import sign

RETRYABLE_STATUSES = frozenset({408, 429})
# How much of a response body is kept on the attempt, and how much is read to keep the
# connection reusable (a longer body is cut off and its connection dropped).
EXCERPT_BYTES = 1024
DRAIN_BYTES = 64 * 1024
CONNECT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "scheduler-webhook/1"

_session: requests.Session | None = None
_session_pid = 0


def _http() -> requests.Session:
    """A keep-alive session per process (a forked worker child makes its own)."""
    global _session, _session_pid
    if _session is None or _session_pid != os.getpid():
        _session, _session_pid = requests.Session(), os.getpid()
    return _session


def encode_body(body: dict[str, object]) -> bytes:
    """The exact bytes sent and signed."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def deliver(delivery: Delivery) -> Receipt:
    target = delivery.target
    data = encode_body(delivery.body)
    headers = {
        "User-Agent": USER_AGENT,
        **target.get("headers", {}),
        **delivery.headers,
        # runs.targets.spec.RESERVED_HEADERS: a job cannot set these.
        "Content-Type": "application/json",
        "Idempotency-Key": delivery.run_id,
        "X-Scheduler-Run-Id": delivery.run_id,
    }
    if delivery.secret:
        headers.update(sign(delivery.secret, data))
    remaining = delivery.remaining()
    started = time.monotonic()
    try:
        response = _http().request(
            target.get("method", "POST"),
            target["url"],
            data=data,
            headers=headers,
            timeout=(min(CONNECT_TIMEOUT_SECONDS, remaining), remaining),
            allow_redirects=False,
            stream=True,
        )
    except requests.Timeout as exc:
        raise DeliveryTimeout(f"no answer within the job's timeout: {exc}", error_type=type(exc).__name__) from exc
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidSchema,
        requests.exceptions.InvalidHeader,
    ) as exc:
        # The same request would fail the same way: a configuration error, not an outage.
        raise FatalError(str(exc) or type(exc).__name__, error_type=type(exc).__name__) from exc
    except requests.RequestException as exc:  # refused, reset, DNS, TLS
        raise RetryableError(str(exc) or type(exc).__name__, error_type=type(exc).__name__) from exc
    latency_ms = int((time.monotonic() - started) * 1000)
    with response:
        excerpt = _read_excerpt(response, delivery)
    status = response.status_code
    if 200 <= status < 300:
        return Receipt(status=status, latency_ms=latency_ms, excerpt=excerpt)
    message = f"{target.get('method', 'POST')} {target['url']} answered {status} {response.reason or ''}".strip()
    if status in RETRYABLE_STATUSES or status >= 500:
        raise RetryableError(
            message,
            status=status,
            latency_ms=latency_ms,
            excerpt=excerpt,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    if 300 <= status < 400:
        message += f" (redirects are not followed; Location: {response.headers.get('Location', '-')})"
    raise FatalError(message, status=status, latency_ms=latency_ms, excerpt=excerpt)


def _read_excerpt(response: requests.Response, delivery: Delivery) -> str:
    """The first bytes of the body, reading (within the deadline) enough to reuse the connection."""
    kept = bytearray()
    read = 0
    try:
        for chunk in response.iter_content(8192):
            if len(kept) < EXCERPT_BYTES:
                kept += chunk[: EXCERPT_BYTES - len(kept)]
            read += len(chunk)
            if read >= DRAIN_BYTES or time.monotonic() >= delivery.deadline:
                break
    except requests.RequestException:
        pass  # the status is what counts; a body cut short is not a failed delivery
    return kept.decode("utf-8", errors="replace")
