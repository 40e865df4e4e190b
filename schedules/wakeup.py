"""Waking the beats early: a change that moves the next due moment sooner (a schedule saved, a
run waiting for a retry) sends a PostgreSQL NOTIFY on commit; sleeping beats LISTEN for it."""

from __future__ import annotations

from django.db import connection, transaction

NOTIFY_CHANNEL = "scheduler_schedules"


def beats_wake() -> None:
    """Tell sleeping beats to look again, once the current transaction commits."""

    def notify() -> None:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")

    transaction.on_commit(notify)
