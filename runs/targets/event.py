"""The EVENT target: the run's document published on a message bus subject.

NATS today (``NATS_URL``): through JetStream, with a publish acknowledgement, when a stream
captures the subject, and with ``Nats-Msg-Id`` set to the run id so a redelivered run is
de-duplicated by the stream; as a core NATS publish (flushed) when no stream does. Another bus
(Kafka) is one more :class:`EventBus` in :data:`BUSES`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol, TypeVar

from django.conf import settings

from runs.targets.base import Delivery, DeliveryTimeout, FatalError, Receipt, RetryableError
from runs.targets.http import encode_body

# How long a subject's stream (or its absence) is remembered before JetStream is asked again.
STREAM_LOOKUP_TTL_SECONDS = 30.0

T = TypeVar("T")


class EventBus(Protocol):
    def publish(
        self, subject: str, data: bytes, *, headers: dict[str, str], msg_id: str, timeout: float
    ) -> dict[str, Any]: ...


class NatsBus:
    """One NATS connection per process, driven by an event loop on a thread of its own, so
    that synchronous Celery tasks can publish without opening a connection per run. The outbox
    relay (``scheduler_project/relay.py``) publishes domain events through it too."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pid = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: Any = None
        self._streams: dict[str, tuple[str | None, float]] = {}

    def publish(
        self, subject: str, data: bytes, *, headers: dict[str, str], msg_id: str, timeout: float
    ) -> dict[str, Any]:
        return self._call(self._publish(subject, data, {**headers, "Nats-Msg-Id": msg_id}, timeout), timeout)

    def ensure_stream(self, name: str, subjects: list[str], *, max_age: float, timeout: float) -> str:
        """The stream that captures ``subjects[0]``: an existing one (left as it is), or a new
        one called ``name`` on ``subjects`` keeping messages ``max_age`` seconds."""
        return self._call(self._ensure_stream(name, subjects, max_age, timeout), timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection, if one is open (a later publish opens a new one)."""
        if self._loop is not None and self._pid == os.getpid() and self._nc is not None:
            self._call(self._close(), timeout)

    async def _close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            await nc.close()

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._ensure_loop())
        try:
            return future.result(timeout)
        except FutureTimeout as exc:
            future.cancel()
            raise DeliveryTimeout(f"NATS did not acknowledge within {timeout:.1f} s") from exc

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # a forked child starts afresh
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="nats-bus", daemon=True).start()
                self._pid, self._nc, self._streams = os.getpid(), None, {}
            return self._loop

    async def _connection(self, timeout: float) -> Any:
        import nats

        if self._nc is None or self._nc.is_closed:
            # Reconnects on its own for a while after a drop; once it gives up (closed), the next
            # publish connects afresh.
            self._nc = await nats.connect(self.url, connect_timeout=max(1, int(timeout)))
        if not self._nc.is_connected:
            # Reconnecting: nats-py would buffer the message and even report a flush as done.
            # Fail instead, so that nothing held only in this process's memory counts as sent.
            raise ConnectionError("not connected to NATS (reconnecting)")
        return self._nc

    async def _ensure_stream(self, name: str, subjects: list[str], max_age: float, timeout: float) -> str:
        from nats.js.errors import BadRequestError, NotFoundError

        js = (await self._connection(timeout)).jetstream(timeout=timeout)
        try:
            found: str = await js.find_stream_name_by_subject(subjects[0])
            return found
        except NotFoundError:
            pass
        try:
            await js.add_stream(name=name, subjects=subjects, max_age=max_age)
        except BadRequestError:  # another process created it meanwhile
            found = await js.find_stream_name_by_subject(subjects[0])
            return found
        self._streams.clear()  # the subjects it captures go through JetStream from now on
        return name

    async def _stream_for(self, nc: Any, subject: str) -> str | None:
        from nats.js.errors import NotFoundError

        cached = self._streams.get(subject)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            stream: str | None = await nc.jetstream().find_stream_name_by_subject(subject)
        except NotFoundError:
            stream = None
        except Exception:
            # Only a server without JetStream means plain NATS. JetStream there but not
            # answering (a timeout, no responders during a restart) must fail this publish, to be
            # tried again: a core publish would get no acknowledgement from the stream.
            if (getattr(nc, "_server_info", None) or {}).get("jetstream"):
                raise
            stream = None
        self._streams[subject] = (stream, time.monotonic() + STREAM_LOOKUP_TTL_SECONDS)
        return stream

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str], timeout: float) -> dict[str, Any]:
        nc = await self._connection(timeout)
        stream = await self._stream_for(nc, subject)
        if stream is None:
            await nc.publish(subject, data, headers=headers)
            await nc.flush(timeout=max(timeout, 0.001))
            return {"bus": "nats", "jetstream": False}
        ack = await nc.jetstream().publish(subject, data, timeout=timeout, stream=stream, headers=headers)
        return {
            "bus": "nats",
            "jetstream": True,
            "stream": ack.stream,
            "seq": ack.seq,
            "duplicate": bool(ack.duplicate),
        }


_buses: dict[str, EventBus] = {}


def bus(name: str = "nats") -> EventBus:
    if name not in _buses:
        if not settings.NATS_URL:
            raise FatalError("EVENT targets need NATS_URL to be configured", error_type="NotConfigured")
        _buses[name] = NatsBus(settings.NATS_URL)
    return _buses[name]


def deliver(delivery: Delivery) -> Receipt:
    subject = delivery.target["subject"]
    data = encode_body(delivery.body)
    timeout = delivery.remaining()
    started = time.monotonic()
    try:
        detail = bus().publish(
            subject,
            data,
            headers={"Content-Type": "application/json", **delivery.headers},
            msg_id=delivery.run_id,
            timeout=timeout,
        )
    except (FatalError, RetryableError):
        raise
    except Exception as exc:  # not connected, no responders, a stream refusing: all transient
        raise RetryableError(
            f"publishing to {subject!r} failed: {exc or type(exc).__name__}", error_type=type(exc).__name__
        ) from exc
    return Receipt(latency_ms=int((time.monotonic() - started) * 1000), detail={"subject": subject, **detail})
