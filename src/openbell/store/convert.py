"""Moving the records of an earlier openbell (one DuckDB file) into a store: every row, counted, or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb

from openbell.errors import ConfigError
from openbell.store.db import Store, _ident
from openbell.store.lake import ALIAS
from openbell.store.migrations import KEYS

_DUCKDB_MAGIC = b"DUCK"


def import_legacy(source: Path, store: Store, *, announce: Callable[[str], object] | None = None) -> dict[str, int]:
    """Copy every table of the DuckDB file `source` into `store`, which must not hold records yet.

    One transaction makes the schema and copies every table; the rows of each table are counted in
    the file and in the store before it commits, so the store ends with all of them or none (a kill
    in the middle leaves it empty and the next run imports again). The file is only read, and stays.
    Returns the rows copied per table.

    Raises:
        ConfigError: `source` is not a DuckDB file or is in use, the store already has records, or
            a count differs.
    """
    source = Path(source).expanduser().absolute()
    _check_source(source)
    alias = f"legacy_{uuid.uuid4().hex[:12]}"
    attachment = store._attachment()
    try:
        attachment.db.execute(f"ATTACH '{_quoted(str(source))}' AS {alias} (READ_ONLY)")
    except duckdb.Error as exc:
        reason = str(exc).splitlines()[0]
        raise ConfigError(f"cannot read {source}: {reason} (is an earlier openbell still running?)") from None
    try:
        with store.transaction() as con:
            if store._versions():
                raise ConfigError(
                    f"the store {store.path} already has records; import {source} into a new store "
                    "(OPENBELL_DATA__DB_PATH, or --db, names another one)"
                )
            store.migrate()
            tables = _tables(con, alias)
            if not tables:  # the transaction rolls back: not even the schema stays
                raise ConfigError(f"{source} holds none of openbell's tables; nothing to move")
            copied = {}
            for table in tables:
                columns = _common_columns(con, alias, table)
                names = ", ".join(_ident(c) for c in columns)
                con.execute(f"INSERT INTO {_ident(table)} ({names}) SELECT {names} FROM {alias}.main.{_ident(table)}")
                (before,) = con.execute(f"SELECT count(*) FROM {alias}.main.{_ident(table)}").fetchone()
                (after,) = con.execute(f"SELECT count(*) FROM {ALIAS}.main.{_ident(table)}").fetchone()
                if before != after:
                    raise ConfigError(f"{table}: {before} rows in {source} but {after} copied; nothing was imported")
                copied[table] = after
    finally:
        attachment.db.execute(f"DETACH {alias}")
    if announce is not None:
        announce(
            f"moved {sum(copied.values()):,} records of {len(copied)} tables from {source} into the store "
            f"{store.path}; every count checked. The old file stays: delete it when you no longer need it."
        )
    return copied


def _check_source(source: Path) -> None:
    if not source.is_file():
        raise ConfigError(f"no DuckDB file at {source}")
    with open(source, "rb") as f:
        head = f.read(12)
    if head[8:12] != _DUCKDB_MAGIC:
        raise ConfigError(f"{source} is not a DuckDB file; `openbell store migrate` reads an earlier openbell's database")


def _tables(con: duckdb.DuckDBPyConnection, alias: str) -> list[str]:
    """The store's tables that the file also has, in the order of the store's keys (then by name)."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = 'main' "
        "AND table_name <> 'schema_migrations' AND table_name IN "
        "(SELECT table_name FROM information_schema.tables WHERE table_catalog = ?)",
        [alias, ALIAS],
    ).fetchall()
    order = list(KEYS)
    return sorted((t for (t,) in rows), key=lambda t: (order.index(t) if t in order else len(order), t))


def _common_columns(con: duckdb.DuckDBPyConnection, alias: str, table: str) -> list[str]:
    """The store table's columns that the file's table has too (a file from before a migration lacks some)."""
    query = (
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = ? AND table_schema = 'main' "
        "AND table_name = ? ORDER BY ordinal_position"
    )
    theirs = {c for (c,) in con.execute(query, [alias, table]).fetchall()}
    return [c for (c,) in con.execute(query, [ALIAS, table]).fetchall() if c in theirs]


def _quoted(text: str) -> str:
    return text.replace("'", "''")
