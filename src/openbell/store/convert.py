"""Moving the records of an earlier openbell (one DuckDB file) into a store: every row, counted, or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import duckdb

from openbell.errors import ConfigError, StoreLockedError
from openbell.store.db import Store, _ident
from openbell.store.lake import ALIAS, _file_head, _is_duckdb, _is_sqlite, new_duckdb, one_row
from openbell.store.migrations import KEYS

# How DuckDB (1.x) refuses a file that another process has open for writing: an IOException starting so.
_DUCKDB_LOCKED = "IO Error: Could not set lock on file "


def import_legacy(source: Path, store: Store, *, announce: Callable[[str], object] | None = None) -> dict[str, int]:
    """Copy every table of the DuckDB file `source` into `store`, which must not hold records yet.

    One transaction makes the schema and copies every table; the rows of each table are counted in
    the file and in the store before it commits, so the store ends with all of them or none (a kill
    in the middle leaves it empty and the next run imports again). The file is only read, and stays.
    Returns the rows copied per table.

    Raises:
        ConfigError: `source` is not an earlier openbell's DuckDB file (or is damaged), the store
            already has records, or a count differs.
        StoreLockedError: another process has `source` open for writing (an earlier openbell running).
    """
    source = Path(source).expanduser().absolute()
    _check_source(source)
    with closing(new_duckdb()) as probe:  # the file is checked before the store is made or touched
        _attach_source(probe, source, "legacy")
        _check_openbell_file(probe, source, "legacy")
    alias = f"legacy_{uuid.uuid4().hex[:12]}"
    attachment = store._attachment()
    _attach_source(attachment.db, source, alias)
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
                try:
                    con.execute(f"INSERT INTO {_ident(table)} ({names}) SELECT {names} FROM {alias}.main.{_ident(table)}")
                except duckdb.Error as exc:  # a damaged block, or rows the store's table refuses
                    reason = str(exc).splitlines()[0]
                    raise ConfigError(f"cannot copy {table} from {source}: {reason}; nothing was moved") from None
                (before,) = one_row(con, f"SELECT count(*) FROM {alias}.main.{_ident(table)}")
                (after,) = one_row(con, f"SELECT count(*) FROM {ALIAS}.main.{_ident(table)}")
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
    if source.is_dir():
        raise ConfigError(f"{source} is a folder, not a DuckDB file; give the earlier openbell's database file")
    if not source.is_file():
        raise ConfigError(f"no DuckDB file at {source}")
    try:
        head = _file_head(source)
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror}") from None
    if _is_sqlite(head):
        raise ConfigError(
            f"{source} is a SQLite file, not an earlier openbell's DuckDB database; nothing to move "
            "(a store's catalog is used as it is: --db)"
        )
    if not _is_duckdb(head):
        raise ConfigError(f"{source} is not a DuckDB file; `openbell store migrate` reads an earlier openbell's database")


def _attach_source(con: duckdb.DuckDBPyConnection, source: Path, alias: str) -> None:
    """Attach the file read-only; a file another process writes to is told apart by DuckDB's lock error."""
    try:
        con.execute(f"ATTACH '{_quoted(str(source))}' AS {alias} (READ_ONLY)")
    except duckdb.Error as exc:
        message = str(exc)
        if isinstance(exc, duckdb.IOException) and message.startswith(_DUCKDB_LOCKED):
            raise StoreLockedError(
                f"{source} is open in another process that writes to it (an earlier openbell still running?); "
                "stop it, then move its records"
            ) from None
        raise ConfigError(
            f"cannot read {source} as a DuckDB database: {message.splitlines()[0]}; nothing was moved"
        ) from None


def _check_openbell_file(con: duckdb.DuckDBPyConnection, source: Path, alias: str) -> None:
    """Each of the file's tables that the store has by name must have its key columns: another program's is refused."""
    columns: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_catalog = ? AND table_schema = 'main'",
        [alias],
    ).fetchall():
        columns.setdefault(table, set()).add(column)
    for table in sorted(columns.keys() & KEYS.keys()):
        if missing := [c for c in KEYS[table] if c not in columns[table]]:
            raise ConfigError(
                f"{source} is not an earlier openbell's database: its {table} table has no {', '.join(missing)} "
                "column; nothing was moved"
            )


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
