"""How long a run waits before its next attempt. Pure: no Django, no clock, no global random.

``FIXED`` waits ``base`` every time; ``EXPONENTIAL`` doubles from ``base`` (base, 2·base,
4·base, ...); ``EXPONENTIAL_JITTER`` draws uniformly from [0, that exponential] ("full
jitter", which spreads a crowd of failing runs best). Every strategy is capped at ``cap``.
A target's ``Retry-After`` is a floor: the next attempt never comes sooner than the target
asked, but a target cannot push it further out than :data:`RETRY_AFTER_MAX_SECONDS`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

STRATEGIES = ("FIXED", "EXPONENTIAL", "EXPONENTIAL_JITTER")
# A Retry-After beyond this is read as this: a misbehaving target cannot park a run for days.
RETRY_AFTER_MAX_SECONDS = 3600.0


def backoff_seconds(
    strategy: str,
    *,
    base: float,
    cap: float,
    attempt: int,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 for the first) of a series."""
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if base < 0 or cap < 0:
        raise ValueError("base and cap must not be negative")
    if strategy == "FIXED":
        delay = base
    elif strategy in ("EXPONENTIAL", "EXPONENTIAL_JITTER"):
        # Capped before it is computed: 2**attempt overflows a float long before attempts run out.
        exponent = min(attempt - 1, 64)
        delay = min(cap, base * 2.0**exponent)
        if strategy == "EXPONENTIAL_JITTER":
            delay *= rand()
    else:
        raise ValueError(f"unknown backoff strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    delay = min(delay, cap)
    if retry_after is not None:
        delay = max(delay, min(max(retry_after, 0.0), RETRY_AFTER_MAX_SECONDS))
    return delay
