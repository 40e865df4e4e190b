"""The pure pieces of execution: backoff delays, webhook signatures, capability routing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runs.backoff import RETRY_AFTER_MAX_SECONDS, backoff_seconds
from runs.routing import MAX_WORKER_CAPABILITIES, run_queue, worker_queues
from runs.targets.http import retry_after_seconds
from runs.targets.signing import compute_signature, sign, verify_signature

SECRET = "a-receiver-secret-0123456789"


def test_fixed_waits_the_base_every_time() -> None:
    assert [backoff_seconds("FIXED", base=10, cap=600, attempt=n) for n in (1, 2, 5)] == [10, 10, 10]


def test_exponential_doubles_from_the_base_up_to_the_cap() -> None:
    delays = [backoff_seconds("EXPONENTIAL", base=10, cap=100, attempt=n) for n in range(1, 7)]
    assert delays == [10, 20, 40, 80, 100, 100]


def test_exponential_survives_attempt_counts_that_would_overflow() -> None:
    assert backoff_seconds("EXPONENTIAL", base=1, cap=600, attempt=5000) == 600


def test_full_jitter_draws_between_zero_and_the_exponential() -> None:
    assert backoff_seconds("EXPONENTIAL_JITTER", base=10, cap=600, attempt=3, rand=lambda: 0.0) == 0
    assert backoff_seconds("EXPONENTIAL_JITTER", base=10, cap=600, attempt=3, rand=lambda: 0.5) == 20
    assert backoff_seconds("EXPONENTIAL_JITTER", base=10, cap=600, attempt=3, rand=lambda: 0.999) < 40


@given(
    strategy=st.sampled_from(["FIXED", "EXPONENTIAL", "EXPONENTIAL_JITTER"]),
    base=st.integers(min_value=1, max_value=86_400),
    extra=st.integers(min_value=0, max_value=7 * 86_400),
    attempt=st.integers(min_value=1, max_value=100),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_every_delay_is_bounded_by_the_cap(strategy: str, base: int, extra: int, attempt: int, draw: float) -> None:
    cap = base + extra
    delay = backoff_seconds(strategy, base=base, cap=cap, attempt=attempt, rand=lambda: draw)
    assert 0 <= delay <= cap


@given(attempt=st.integers(min_value=1, max_value=30))
def test_exponential_never_shrinks(attempt: int) -> None:
    first = backoff_seconds("EXPONENTIAL", base=3, cap=10_000, attempt=attempt)
    assert backoff_seconds("EXPONENTIAL", base=3, cap=10_000, attempt=attempt + 1) >= first


def test_retry_after_is_a_floor_with_a_ceiling() -> None:
    assert backoff_seconds("FIXED", base=10, cap=600, attempt=1, retry_after=30) == 30
    assert backoff_seconds("FIXED", base=10, cap=600, attempt=1, retry_after=2) == 10
    assert backoff_seconds("FIXED", base=10, cap=600, attempt=1, retry_after=10**9) == RETRY_AFTER_MAX_SECONDS
    assert backoff_seconds("FIXED", base=10, cap=600, attempt=1, retry_after=-5) == 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "LINEAR", "attempt": 1}, "unknown backoff strategy"),
        ({"strategy": "FIXED", "attempt": 0}, "attempt counts from 1"),
    ],
)
def test_backoff_refuses_nonsense(kwargs: dict[str, object], message: str) -> None:
    strategy = kwargs.pop("strategy")
    with pytest.raises(ValueError, match=message):
        backoff_seconds(str(strategy), base=1, cap=2, **kwargs)  # type: ignore[arg-type]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from datetime import UTC, datetime

    now = datetime(2027, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds("Fri, 01 Jan 2027 12:00:30 GMT", now=now) == 30
    assert retry_after_seconds("Fri, 01 Jan 2027 11:00:00 GMT", now=now) == 0  # in the past: now
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None


def test_a_signature_verifies_and_anything_changed_does_not() -> None:
    body = b'{"run_id":"r1","payload":{}}'
    headers = sign(SECRET, body, now=1_800_000_000)
    assert headers["X-Scheduler-Signature"] == "v1=" + compute_signature(SECRET, "1800000000", body)
    assert verify_signature(SECRET, headers, body, now=1_800_000_010)
    assert not verify_signature(SECRET, headers, body + b" ", now=1_800_000_010)
    assert not verify_signature("another-secret-0123456789", headers, body, now=1_800_000_010)
    tampered = {**headers, "X-Scheduler-Timestamp": "1800000001"}
    assert not verify_signature(SECRET, tampered, body, now=1_800_000_010)


def test_a_stale_or_missing_signature_is_refused() -> None:
    body = b"{}"
    headers = sign(SECRET, body, now=1_800_000_000)
    assert not verify_signature(SECRET, headers, body, now=1_800_000_000 + 301)
    assert verify_signature(SECRET, headers, body, now=1_800_000_000 + 301, tolerance=600)
    assert not verify_signature(SECRET, {}, body)
    assert not verify_signature(SECRET, {"X-Scheduler-Timestamp": "x", "X-Scheduler-Signature": "v1=00"}, body)


def test_headers_are_case_insensitive_and_any_of_several_signatures_may_match() -> None:
    body = b"{}"
    headers = sign(SECRET, body, now=1_800_000_000)
    lowered = {k.lower(): v for k, v in headers.items()}
    assert verify_signature(SECRET, lowered, body, now=1_800_000_000)
    rotated = {**headers, "X-Scheduler-Signature": "v1=deadbeef, " + headers["X-Scheduler-Signature"]}
    assert verify_signature(SECRET, rotated, body, now=1_800_000_000)


def test_capability_queues() -> None:
    assert run_queue("reports", []) == "reports"
    assert run_queue("reports", ["gpu", "eu", "gpu"]) == "reports@eu+gpu"
    assert worker_queues(["default"], []) == ["default"]
    assert worker_queues(["default"], ["gpu", "eu"]) == ["default", "default@eu", "default@gpu", "default@eu+gpu"]


@given(
    worker=st.sets(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=5),
    job=st.sets(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=5),
)
def test_a_worker_consumes_a_jobs_queue_exactly_when_it_has_every_capability(worker: set[str], job: set[str]) -> None:
    assert (run_queue("q", job) in worker_queues(["q"], worker)) == job.issubset(worker)


def test_too_many_worker_capabilities_are_refused() -> None:
    with pytest.raises(ValueError, match="at most"):
        worker_queues(["q"], [f"c{i}" for i in range(MAX_WORKER_CAPABILITIES + 1)])
