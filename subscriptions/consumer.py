"""The event consumer behind ``manage.py consume_events``: NATS messages on the subjects of the
enabled subscriptions in, schedule triggers out (``subscriptions.services.subscription_handle``).

**What it listens to.** The union of the enabled subscriptions' subjects, read from the database
every ``refresh_seconds`` (2 s), reduced to the fewest patterns that cover it (``erp.>`` makes
``erp.invoice.*`` redundant), so no message arrives twice on overlapping subscriptions.

**How.** For each pattern, a JetStream *durable pull consumer* when a stream captures the whole
pattern (checked when the pattern appears, every ``STREAM_CHECK_SECONDS`` and after a reconnect):
messages published while the consumer is down wait in the stream, and one is acknowledged only
once handled, so nothing is lost to a crash or a database outage (a retryable failure is
acknowledged negatively and comes back after ``RETRY_DELAY_SECONDS``). The durable is created to
deliver what is published from then on (not the stream's history), is named after the pattern
(``scheduler-subscriptions-<hash>``), shared by every consumer process, and removed by the server
after ``DURABLE_INACTIVE_SECONDS`` unused. Otherwise a core NATS subscription in the queue group
``scheduler-subscriptions``: several consumer processes share the messages, and a message
published while none is connected is missed (core NATS keeps nothing).

**Robustness.** A malformed event is logged and counted by the service and acknowledged; an
unexpected error while handling one is logged and never stops the loop. The client reconnects to
NATS without end; core subscriptions are restored by it, JetStream consumers are checked again.
SIGTERM (or SIGINT) stops fetching, lets the message in hand finish, drains the connection and
returns.

The NATS client runs on this process's event loop; the Django work runs in one thread of its own
(``sync_to_async``), so the ORM never runs inside the loop and keeps one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, close_old_connections, connection

from scheduler_project import tracing
from subscriptions import selectors
from subscriptions.engine import InboundEvent, subject_covers, subjects_cover
from subscriptions.services import HandleResult, subscription_handle

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0
STREAM_CHECK_SECONDS = 30.0
QUEUE_GROUP = "scheduler-subscriptions"
DURABLE_PREFIX = "scheduler-subscriptions"
DURABLE_INACTIVE_SECONDS = 7 * 86400.0
#: how long JetStream waits for an acknowledgement before it delivers a message again
ACK_WAIT_SECONDS = 60.0
RETRY_DELAY_SECONDS = 5.0
FETCH_BATCH = 10
FETCH_TIMEOUT_SECONDS = 1.0
#: failed fetches in a row (other than "no message yet") before a consumer is set up again
FETCH_FAILURES_BEFORE_RESET = 5
JETSTREAM_TIMEOUT_SECONDS = 5.0
SHUTDOWN_TIMEOUT_SECONDS = 30.0


def durable_name(pattern: str) -> str:
    """A JetStream consumer name for ``pattern`` (names may not hold ``.``, ``*`` or ``>``)."""
    return f"{DURABLE_PREFIX}-{hashlib.sha256(pattern.encode()).hexdigest()[:16]}"


def _handle_sync(message: InboundEvent) -> HandleResult:
    close_old_connections()  # a connection the database dropped since the last message
    # The runs it triggers join the publisher's trace, when its headers carry one.
    attributes = {"messaging.system": "nats", "messaging.destination.name": message.subject}
    with tracing.span_consuming("event.consume", message.headers, attributes):
        try:
            return subscription_handle(message=message)
        except DatabaseError:
            connection.close()  # the next message starts with a fresh one
            raise


def _subjects_sync() -> list[str]:
    close_old_connections()
    try:
        return selectors.subscription_subjects()
    except DatabaseError:
        connection.close()
        raise


@dataclass
class _Listener:
    pattern: str
    stream: str | None  # None: core NATS
    subscription: Any = None  # core: the subscription; JetStream: the pull subscription
    task: asyncio.Task[None] | None = None  # JetStream: the fetch loop
    broken: bool = False  # the fetch loop gave up: set it up again

    @property
    def description(self) -> str:
        return f"{self.pattern} (JetStream stream {self.stream})" if self.stream else f"{self.pattern} (core NATS)"


class EventConsumer:
    def __init__(self, *, url: str, refresh_seconds: float = REFRESH_SECONDS, queue_group: str = QUEUE_GROUP) -> None:
        self.url = url
        self.refresh_seconds = refresh_seconds
        self.queue_group = queue_group
        self.listeners: dict[str, _Listener] = {}
        self.stopping = asyncio.Event()
        self.nc: Any = None
        self._next_stream_check = 0.0
        self.handled = 0

    def stop(self) -> None:
        """Ask :meth:`run` to return (from a signal handler on the loop)."""
        self.stopping.set()

    async def run(self) -> None:
        """Connect (retrying until NATS answers), then follow the subscriptions until stopped."""
        self.nc = await self._connect()
        if self.nc is None:
            return
        try:
            while not self.stopping.is_set():
                await self._refresh()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.refresh_seconds)
        finally:
            await self._shutdown()

    # --- Connection -----------------------------------------------------------------------------

    async def _connect(self) -> Any:
        from nats.aio.client import Client

        nc = Client()

        async def on_error(exc: Exception) -> None:
            logger.warning("NATS: %s: %s", type(exc).__name__, exc)

        async def on_disconnected() -> None:
            if not self.stopping.is_set():
                logger.warning("NATS: disconnected from %s; reconnecting", self.url)

        async def on_reconnected() -> None:
            logger.info("NATS: reconnected to %s", self.url)
            self._next_stream_check = 0.0  # streams and consumers may have changed meanwhile

        connecting = asyncio.ensure_future(
            nc.connect(
                self.url,
                name="scheduler consume_events",
                connect_timeout=2,
                reconnect_time_wait=1,
                max_reconnect_attempts=-1,  # also the first connection: wait for NATS to come up
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
            )
        )
        stopping = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
            await nc.close()
            return None
        connecting.result()
        logger.info("NATS: connected to %s", self.url)
        return nc

    async def _shutdown(self) -> None:
        listeners, self.listeners = list(self.listeners.values()), {}
        # Fetch loops see `stopping` within a fetch timeout and after the message in hand.
        tasks = [listener.task for listener in listeners if listener.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT_SECONDS)
        await asyncio.gather(*(self._stop_listener(listener) for listener in listeners), return_exceptions=True)
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.drain(), SHUTDOWN_TIMEOUT_SECONDS)
            except Exception as exc:  # already broken: nothing left to drain
                logger.debug("NATS: drain failed: %s", exc)
                await self.nc.close()
        logger.info("event consumer stopped after %d messages", self.handled)

    # --- What to listen to ----------------------------------------------------------------------

    async def _refresh(self) -> None:
        try:
            patterns = subjects_cover(await sync_to_async(_subjects_sync)())
        except DatabaseError as exc:
            logger.warning("event consumer: cannot read the subscriptions: %s", exc)
            return
        check_streams = time.monotonic() >= self._next_stream_check and self.nc.is_connected
        changed = False
        for pattern in set(self.listeners) - set(patterns):
            await self._stop_listener(self.listeners.pop(pattern))
            changed = True
        for pattern in patterns:
            current = self.listeners.get(pattern)
            if current is not None and not current.broken and not check_streams:
                continue
            if not self.nc.is_connected:
                continue  # set up once connected again (core subscriptions survive on their own)
            try:
                stream = await self._stream_for(pattern)
            except Exception as exc:  # JetStream did not answer (starting up, say)
                if current is not None and not current.broken:
                    logger.warning("event consumer: cannot look up a stream for %s: %s", pattern, exc)
                    continue  # keep what we have
                # Receive the messages now at least; the next check may move them to a stream.
                logger.warning("event consumer: cannot look up a stream for %s (%s): core NATS for now", pattern, exc)
                stream = None
            unchanged = current is not None and not current.broken and current.stream == stream
            if unchanged and (stream is None or await self._consumer_exists(stream, pattern)):
                continue
            if current is not None:
                await self._stop_listener(current)
                del self.listeners[pattern]
            try:
                self.listeners[pattern] = await self._start_listener(pattern, stream)
            except Exception as exc:
                logger.warning("event consumer: cannot subscribe to %s: %s: %s", pattern, type(exc).__name__, exc)
                continue
            changed = True
        if check_streams:
            self._next_stream_check = time.monotonic() + STREAM_CHECK_SECONDS
        if changed:
            described = ", ".join(listener.description for listener in self.listeners.values()) or "nothing"
            logger.info("event consumer listening on %s", described)

    async def _stream_for(self, pattern: str) -> str | None:
        """The stream that captures every subject of ``pattern``; None when none does (a stream
        capturing part of it is not enough: core NATS receives all of it)."""
        from nats.js.errors import NotFoundError

        if not self.nc._server_info.get("jetstream"):  # the server's INFO: JetStream is off
            return None
        js = self.nc.jetstream(timeout=JETSTREAM_TIMEOUT_SECONDS)
        try:
            name: str = await js.find_stream_name_by_subject(pattern)
        except NotFoundError:
            return None
        info = await js.stream_info(name)
        subjects = info.config.subjects or []
        return name if any(subject_covers(subject, pattern) for subject in subjects) else None

    async def _consumer_exists(self, stream: str, pattern: str) -> bool:
        from nats.js.errors import NotFoundError

        try:
            await self.nc.jetstream(timeout=JETSTREAM_TIMEOUT_SECONDS).consumer_info(stream, durable_name(pattern))
        except NotFoundError:
            return False
        except Exception:  # cannot tell: leave it be
            return True
        return True

    async def _start_listener(self, pattern: str, stream: str | None) -> _Listener:
        listener = _Listener(pattern, stream)
        if stream is None:
            listener.subscription = await self.nc.subscribe(pattern, queue=self.queue_group, cb=self._on_core_message)
            return listener
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        config = ConsumerConfig(
            durable_name=durable_name(pattern),
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_SECONDS,
            inactive_threshold=DURABLE_INACTIVE_SECONDS,
            description=f"scheduler event subscriptions on {pattern}",
        )
        js = self.nc.jetstream(timeout=JETSTREAM_TIMEOUT_SECONDS)
        listener.subscription = await js.pull_subscribe(
            pattern, durable=durable_name(pattern), stream=stream, config=config
        )
        listener.task = asyncio.create_task(self._fetch_loop(listener), name=f"fetch {pattern}")
        return listener

    async def _stop_listener(self, listener: _Listener) -> None:
        if listener.task is not None:
            listener.task.cancel()
            await asyncio.gather(listener.task, return_exceptions=True)
        try:
            await listener.subscription.unsubscribe()
        except Exception as exc:  # the connection is gone, and the subscription with it
            logger.debug("unsubscribing from %s failed: %s", listener.pattern, exc)

    # --- Messages -------------------------------------------------------------------------------

    async def _on_core_message(self, msg: Any) -> None:
        await self._handle(InboundEvent(subject=msg.subject, data=msg.data, headers=msg.headers or {}))

    async def _fetch_loop(self, listener: _Listener) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        failures = 0
        while not self.stopping.is_set():
            try:
                messages = await listener.subscription.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_SECONDS)
            except (NatsTimeout, TimeoutError):
                continue  # nothing published
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # disconnected, or the consumer is gone
                failures += 1
                logger.debug("fetching from %s failed: %s: %s", listener.description, type(exc).__name__, exc)
                if failures >= FETCH_FAILURES_BEFORE_RESET and self.nc.is_connected:
                    logger.warning("event consumer: %s keeps failing (%s); setting it up again", listener.pattern, exc)
                    listener.broken = True
                    return
                await asyncio.sleep(1.0)
                continue
            failures = 0
            for position, msg in enumerate(messages):
                if self.stopping.is_set():  # hand the rest back at once, for another consumer
                    await asyncio.gather(*(m.nak() for m in messages[position:]), return_exceptions=True)
                    return
                await self._on_stream_message(msg)

    async def _on_stream_message(self, msg: Any) -> None:
        metadata = msg.metadata
        message = InboundEvent(
            subject=msg.subject,
            data=msg.data,
            headers=msg.headers or {},
            stream=metadata.stream,
            sequence=metadata.sequence.stream,
        )
        result = await self._handle(message)
        try:
            if result is None or result.retry:
                await msg.nak(delay=RETRY_DELAY_SECONDS)
            else:
                await msg.ack()
        except Exception as exc:  # not connected: JetStream delivers it again after ack_wait
            logger.warning("event consumer: cannot acknowledge a message on %s: %s", message.subject, exc)

    async def _handle(self, message: InboundEvent) -> HandleResult | None:
        """Handle one message; None when that failed as a whole (the database is down, say)."""
        self.handled += 1
        try:
            result: HandleResult = await sync_to_async(_handle_sync, thread_sensitive=True)(message)
        except Exception as exc:  # never let one message stop the consumer
            logger.error(
                "event on %s not handled: %s: %s",
                message.subject,
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, DatabaseError),
            )
            return None
        if result.runs():
            logger.info("event on %s started runs %s", message.subject, ", ".join(map(str, result.runs())))
        return result
