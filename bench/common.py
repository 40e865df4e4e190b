"""What every benchmark script needs before and after Django starts: its own database and Redis
DB (refusing the shared ones it would wipe), and a plain SQL helper."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def configure(args: argparse.Namespace, *, name: str) -> None:
    """Point the project at the bench database and Redis DB, creating the database if missing.
    ``name`` names the script's scratch DATA_DIR."""
    database = urlsplit(args.postgres).path.lstrip("/")
    if "bench" not in database:
        sys.exit(f"--postgres must name a dedicated bench database (got {database!r})")
    redis_db = urlsplit(args.redis).path.lstrip("/") or "0"
    if redis_db == "0":
        sys.exit("--redis must name a dedicated Redis DB other than 0: the script flushes it")
    os.environ["POSTGRES_URL"] = args.postgres
    os.environ["REDIS_URL"] = args.redis
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789abcdef")
    os.environ.setdefault("DATA_DIR", str(Path(tempfile.gettempdir()) / f"scheduler-bench-{name}"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler_project.settings")
    if args.child:
        return
    import psycopg2

    server = psycopg2.connect(args.postgres.rsplit("/", 1)[0] + "/postgres")
    server.autocommit = True
    with server.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{database}"')
    server.close()


def sql(statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on Django's connection; its rows, if it returns any."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []
