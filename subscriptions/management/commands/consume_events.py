"""Trigger schedules from inbound NATS events: `manage.py consume_events`, until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scheduler_project import prometheus, tracing
from subscriptions.consumer import QUEUE_GROUP, REFRESH_SECONDS, EventConsumer


class Command(BaseCommand):
    help = (
        "Listen on NATS to the subjects of the enabled event subscriptions and trigger their schedules, "
        "until stopped (SIGTERM or Ctrl-C). Run one or more: they share the messages."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="", help="NATS server (default: NATS_URL)")
        parser.add_argument(
            "--refresh-seconds",
            type=float,
            default=REFRESH_SECONDS,
            help=f"how often to read the subscriptions again (default {REFRESH_SECONDS:g})",
        )
        parser.add_argument(
            "--queue-group",
            default=QUEUE_GROUP,
            help=f"core NATS queue group the consumer processes share (default {QUEUE_GROUP})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        url = options["url"] or settings.NATS_URL
        if not url:
            raise CommandError("NATS_URL is not set: there is no bus to listen to.")
        if options["refresh_seconds"] <= 0:
            raise CommandError("--refresh-seconds must be positive.")
        tracing.tracing_configure("scheduler-consumer")
        if settings.METRICS_PORT is not None:
            prometheus.serve(port=settings.METRICS_PORT, addr=settings.METRICS_ADDR, process="consume_events")
        self.stdout.write(f"consuming events from {url}; SIGTERM or Ctrl-C stops")
        asyncio.run(self._run(url, options["refresh_seconds"], options["queue_group"]))

    async def _run(self, url: str, refresh_seconds: float, queue_group: str) -> None:
        consumer = EventConsumer(url=url, refresh_seconds=refresh_seconds, queue_group=queue_group)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, consumer.stop)
        await consumer.run()
