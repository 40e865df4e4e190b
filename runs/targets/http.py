"""The HTTP target: one signed JSON request per attempt.

2xx delivers. 408, 429, 5xx and network errors are worth another attempt (``Retry-After``
honoured); any other status fails at once: a 4xx means the request itself is wrong, and
redirects are not followed (a webhook that moved is a configuration error to fix, not to guess).
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

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


# --- The deadline: a watchdog that cuts the connection ----------------------------------------
#
# requests' read timeout bounds each read from the socket, not the answer: a server that sends
# its status line and headers a byte at a time, each within the timeout, would hold the attempt
# past the job's timeout_seconds. A watchdog thread (one per process: a thread per delivery cost
# more than the rest of the bookkeeping) shuts the connection's socket down at the deadline; the
# read blocked on it returns at once, and the delivery fails as a timeout.


class _Watch:
    """The connection of one delivery; ``cut`` once the deadline struck it."""

    def __init__(self) -> None:
        self.connection: HTTPConnection | None = None
        self.cut = threading.Event()
        self.done = False  # the delivery is over: its connection may serve the next one


class _Watchdog:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._deadlines: list[tuple[float, int, _Watch]] = []
        self._finished = 0  # entries of finished deliveries still in the heap
        self._order = itertools.count()
        threading.Thread(target=self._run, name="http-deadlines", daemon=True).start()

    def start(self, watch: _Watch, deadline: float) -> None:
        with self._condition:
            heapq.heappush(self._deadlines, (deadline, next(self._order), watch))
            if self._deadlines[0][2] is watch:
                self._condition.notify()  # sooner than what the thread sleeps towards

    def stop(self, watch: _Watch) -> None:
        with self._condition:  # never strike a connection handed back to the pool
            watch.done = True
            self._finished += 1
            # Finished deliveries leave their entry behind (up to a job's timeout): drop them
            # once they are most of the heap, so it stays about as large as what is in flight.
            if self._finished > 64 and 2 * self._finished > len(self._deadlines):
                self._deadlines = [entry for entry in self._deadlines if not entry[2].done]
                heapq.heapify(self._deadlines)
                self._finished = 0

    def _run(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                while self._deadlines and self._deadlines[0][0] <= now:
                    watch = heapq.heappop(self._deadlines)[2]
                    if watch.done:
                        self._finished -= 1
                    else:
                        _strike(watch)
                self._condition.wait(self._deadlines[0][0] - now if self._deadlines else None)


def _strike(watch: _Watch) -> None:
    watch.cut.set()
    sock = getattr(watch.connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


_watching = threading.local()  # the _Watch of the delivery this thread is making, if any
_watchdog_of: dict[int, _Watchdog] = {}  # per process: a forked child starts its own thread
_watchdog_made = threading.Lock()


def _watched(connection: HTTPConnection) -> None:
    watch: _Watch | None = getattr(_watching, "watch", None)
    if watch is not None:
        watch.connection = connection


class _WatchedConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        _watched(self)
        super().request(*args, **kwargs)


class _WatchedTLSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        _watched(self)
        super().request(*args, **kwargs)


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _WatchedTLSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedTLSConnection


_WATCHED_POOLS = {"http": _WatchedPool, "https": _WatchedTLSPool}


class _WatchedAdapter(HTTPAdapter):
    """Connections a delivery's watchdog can cut, made straight to the target or through an HTTP
    proxy (a SOCKS proxy's connections are urllib3's own: only the read timeout bounds them)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[_Watch]:
    """Cut the connection the block's request uses once ``seconds`` have passed."""
    pid = os.getpid()
    with _watchdog_made:
        watchdog = _watchdog_of.get(pid) or _watchdog_of.setdefault(pid, _Watchdog())
    watch = _Watch()
    _watching.watch = watch
    watchdog.start(watch, time.monotonic() + seconds)
    try:
        yield watch
    finally:
        watchdog.stop(watch)
        _watching.watch = None


def _http() -> requests.Session:
    """A keep-alive session per process (a forked worker child makes its own), whose connections
    a delivery's watchdog can cut.

    It does not read the environment on each request (``trust_env``): requests would walk the
    whole environment twice per request for proxy variables and look for a ``.netrc``, a tenth of
    a delivery's time in the worker, and more in a pod given a variable per service of its
    namespace. The environment is read once per process instead: the proxies per target
    (:func:`_proxies`) and the CA bundle (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``). A
    ``.netrc`` is not consulted: a job carries its own credentials in its headers."""
    global _session, _session_pid
    if _session is None or _session_pid != os.getpid():
        session = requests.Session()
        session.trust_env = False
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        adapter = _WatchedAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _session, _session_pid = session, os.getpid()
    return _session


@functools.lru_cache(maxsize=1024)
def _proxies_of(origin: str) -> dict[str, str]:
    prepared = requests.PreparedRequest()  # as requests asks: of the IDNA-encoded host
    try:
        prepared.prepare_url(origin, None)
    except requests.RequestException:  # the delivery itself turns the URL down
        return {}
    return requests.utils.get_environ_proxies(prepared.url or origin)


def _proxies(url: str) -> dict[str, str]:
    """The proxies the environment gives ``url`` (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``,
    less ``NO_PROXY``), as requests reads them, once per origin and process."""
    try:
        parts = urlsplit(url)
    except ValueError:  # requests turns the same URL down with InvalidURL
        return {}
    return dict(_proxies_of(f"{parts.scheme}://{parts.netloc}"))


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
    with _deadline(remaining) as watch:
        try:
            response = _http().request(
                target.get("method", "POST"),
                target["url"],
                data=data,
                headers=headers,
                timeout=(min(CONNECT_TIMEOUT_SECONDS, remaining), remaining),
                proxies=_proxies(target["url"]),
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
        except requests.RequestException as exc:  # refused, reset, DNS, TLS; or cut at the deadline
            if watch.cut.is_set():
                raise DeliveryTimeout(
                    f"no complete answer within the job's timeout ({remaining:.3g} s)", error_type="ReadTimeout"
                ) from exc
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
