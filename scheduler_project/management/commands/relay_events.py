"""Relay the outbox to NATS: `manage.py relay_events` (a process of its own) or `--once`."""

from __future__ import annotations

import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scheduler_project.relay import RelayLoop, outbox_relay_all, relay_disconnect
from scheduler_project.selectors import outbox_backlog


class Command(BaseCommand):
    help = (
        "Publish the outbox's domain events to NATS, oldest first, until stopped (SIGTERM or Ctrl-C). "
        "Safe beside the beat leader's relay: one relay publishes at a time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="publish what is waiting, report the backlog and exit (1 on a failure)"
        )
        parser.add_argument("--url", default="", help="NATS server (default: NATS_URL)")

    def handle(self, *args: Any, **options: Any) -> None:
        url = options["url"] or settings.NATS_URL
        if not url:
            raise CommandError("NATS_URL is not set: events stay in the outbox, there is nothing to relay to.")
        if options["once"]:
            result = outbox_relay_all(url=url)
            self.stdout.write(f"published {result.published} events; {outbox_backlog().describe()}")
            if result.error:
                raise CommandError(f"publishing stopped: {result.error}")
            return
        loop = RelayLoop(url=url)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: loop.stopping.set())
        self.stdout.write(f"relaying the outbox to {url}; SIGTERM or Ctrl-C stops")
        try:
            loop.run()
        finally:
            relay_disconnect(url)
