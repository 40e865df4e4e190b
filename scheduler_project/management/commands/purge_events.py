"""Delete old published events from the outbox: `manage.py purge_events --days 30`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scheduler_project.relay import outbox_purge


class Command(BaseCommand):
    help = (
        "Delete published domain events older than --days (default OUTBOX_RETENTION_DAYS). Schedule events "
        "are kept: a schedule's explain reads its pause history from them. The relay's loop does this hourly."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="age in days (default OUTBOX_RETENTION_DAYS)")
        parser.add_argument(
            "--include-unpublished",
            action="store_true",
            help="also events never published (an installation without NATS keeps them all otherwise)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = settings.OUTBOX_RETENTION_DAYS if options["days"] is None else options["days"]
        if not days or days < 1:
            raise CommandError("--days must be 1 or more.")
        deleted = outbox_purge(older_than=timedelta(days=days), include_unpublished=options["include_unpublished"])
        self.stdout.write(f"deleted {deleted} events older than {days} days")
