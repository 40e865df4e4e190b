"""Webhook signatures: how the scheduler signs an HTTP target's request, and how a receiver checks it.

Standard library only, so a receiver can copy this file as it is. The scheduler sends::

    X-Scheduler-Timestamp: 1767225600
    X-Scheduler-Signature: v1=<hex HMAC-SHA256 of b"<timestamp>." + raw body, keyed by the secret>

A receiver verifies the raw body bytes (before any JSON parsing), refuses a timestamp too far
from its own clock (a replayed request), and compares in constant time::

    from signing import verify_signature
    if not verify_signature(secret, request.headers, request.body):
        return 401

During a secret rotation, ``X-Scheduler-Signature`` may carry several ``v1=`` values separated by
commas; any one matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Scheduler-Timestamp"
SIGNATURE_HEADER = "X-Scheduler-Signature"
# Receivers accept a signature this many seconds either side of their clock by default.
DEFAULT_TOLERANCE_SECONDS = 300


def compute_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``timestamp.body`` under ``secret``."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The two headers that sign ``body``."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: "v1=" + compute_signature(secret, timestamp, body)}


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when ``headers`` sign ``body`` with ``secret`` at a time within ``tolerance``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    signature = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not timestamp.isdigit() or not signature:
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    expected = compute_signature(secret, timestamp, body)
    candidates = [part.strip()[3:] for part in signature.split(",") if part.strip().startswith("v1=")]
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
