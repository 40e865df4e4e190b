"""Print a signed API token for local use: `manage.py issue_token --tenant acme --scope "..."`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scheduler_project.api.authentication import token_issue


class Command(BaseCommand):
    help = "Print an HS256 bearer token for a tenant, signed with this installation's SECRET_KEY."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="tenant_id claim")
        parser.add_argument(
            "--scope",
            default="scheduler:admin",
            help='space-separated scopes, e.g. "scheduler:read scheduler:operate" (default: scheduler:admin)',
        )
        parser.add_argument("--subject", default="", help="sub claim (default: local:<tenant>)")
        parser.add_argument("--hours", type=float, default=12.0, help="lifetime in hours (default 12)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 0 < options["hours"] <= 24 * 365:
            raise CommandError("--hours must be between 0 and 8760.")
        try:
            token = token_issue(
                tenant_id=options["tenant"],
                scopes=options["scope"].split(),
                subject=options["subject"],
                lifetime=timedelta(hours=options["hours"]),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(token)
