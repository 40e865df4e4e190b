"""Writing many rows of a model in one statement, and knowing which were written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from psycopg2.extras import Json


def bulk_insert_new(model: type[Model], instances: Sequence[Model]) -> set[Any]:
    """Insert ``instances`` (their primary keys set in Python, as UUIDs are), skipping any that a
    unique constraint refuses, and return the primary keys of those written.

    What ``bulk_create(ignore_conflicts=True)`` followed by a read of which rows exist does, in one
    statement on PostgreSQL: ``INSERT … SELECT … FROM unnest(<an array per column>) ON CONFLICT DO
    NOTHING RETURNING pk``. Compiling ``bulk_create``'s ``VALUES`` list, a placeholder per row and
    column, cost more than the statement itself for the beat's batches of 500 runs (bench/beat.py).
    Values are prepared as the ORM prepares them (``pre_save``, ``get_db_prep_save``), so defaults
    and ``auto_now`` fields come out the same. A column holding one value in every row is sent
    once, not as an array, and UUIDs and JSON as text, which psycopg2 quotes in C: quoting the
    statement's parameters had cost as much as PostgreSQL's work on it.
    """
    if not instances:
        return set()
    meta, pk = model._meta, model._meta.pk
    if any(getattr(field, "generated", False) or field.has_db_default() for field in meta.concrete_fields):
        raise NotImplementedError(f"{meta.label} has columns the database computes; use bulk_create")
    assert pk is not None
    assert pk.column
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(instances, ignore_conflicts=True)
        pks = [instance.pk for instance in instances]
        return set(model._default_manager.filter(pk__in=pks).values_list("pk", flat=True))
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: each use of the proxy is a lookup
    qn = db.ops.quote_name
    names: list[str] = []
    selected: list[str] = []
    unnested: list[str] = []
    constants: list[Any] = []
    arrays: list[list[Any]] = []
    for field in meta.concrete_fields:
        if field is meta.auto_field or not field.column:
            continue
        names.append(qn(field.column))
        column, distinct = _column(field, instances, db)
        if distinct == 1 and field is not pk:  # the primary key makes one row per instance
            selected.append(f"%s::{field.db_type(db)}")
            constants.append(column[0])
        else:
            selected.append(f"v.c{len(arrays)}")
            unnested.append(f"%s::{field.db_type(db)}[]")
            arrays.append(column)
    aliases = ", ".join(f"c{index}" for index in range(len(arrays)))
    with db.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(meta.db_table)} ({', '.join(names)}) "
            f"SELECT {', '.join(selected)} FROM unnest({', '.join(unnested)}) AS v({aliases}) "
            f"ON CONFLICT DO NOTHING RETURNING {qn(pk.column)}",
            constants + arrays,
        )
        return {row[0] for row in cursor.fetchall()}


def bulk_update_columns(model: type[Model], instances: Sequence[Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of ``instances``, found by primary key, in one statement: what
    ``bulk_update`` does, as ``UPDATE … FROM unnest(<an array per column>)`` on PostgreSQL.

    ``bulk_update`` builds a ``CASE WHEN`` per row and column: compiling it cost more than the rest
    of the beat's batch of 500 schedules (bench/beat.py), and PostgreSQL evaluates its branches for
    each row, so a calendar edit's refresh of thousands of schedules grew with the square of their
    number (bench/calendar_edit.py). Values are prepared as :func:`bulk_insert_new` prepares them,
    ``auto_now`` fields included (``bulk_update`` on SQLite writes what the instances hold).
    """
    if not instances:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(instances, fields)
        return
    db = connections[DEFAULT_DB_ALIAS]
    qn = db.ops.quote_name
    meta = model._meta
    assert meta.pk is not None
    columns: list[Field] = [meta.pk, *(meta.get_field(name) for name in fields)]  # type: ignore[list-item]
    names = [qn(field.column) for field in columns if field.column]
    assert len(names) == len(columns), "only concrete columns can be written"
    assignments = ", ".join(f"{name} = v.c{index}" for index, name in enumerate(names) if index)
    unnested = ", ".join(f"%s::{field.db_type(db)}[]" for field in columns)
    aliases = ", ".join(f"c{index}" for index in range(len(columns)))
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE {qn(meta.db_table)} AS t SET {assignments} FROM unnest({unnested}) AS v({aliases}) "
            f"WHERE t.{names[0]} = v.c0",
            [_column(field, instances, db)[0] for field in columns],
        )


def _column(field: Field, instances: Sequence[Model], db: BaseDatabaseWrapper) -> tuple[list[Any], int]:
    """A column's values as the ORM writes them, and how many distinct ones it holds. Each value
    is prepared once: most columns of a batch of runs hold a few (the tenant, the job, the status,
    empty fields)."""
    prepare, attname = field.get_db_prep_save, field.attname
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        values = [field.pre_save(instance, True) for instance in instances]
    else:
        values = [getattr(instance, attname) for instance in instances]
    keys = list(zip(map(type, values), values, strict=True))  # True and 1 are equal; a JSON column may hold both
    try:
        prepared = {key: _as_text(prepare(key[1], db)) for key in dict.fromkeys(keys)}
    except TypeError:  # not hashable (a JSON document): each value prepared for itself
        return [_as_text(prepare(value, db)) for value in values], len(values)
    return [prepared[key] for key in keys], len(prepared)


def _as_text(value: Any) -> Any:
    """A UUID or a JSON document as the text PostgreSQL casts from."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Json):
        return value.dumps(value.adapted)
    return value
