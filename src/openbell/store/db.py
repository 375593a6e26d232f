"""The DuckDB store: short-lived connections that wait out other processes' locks, migrations, and validated writes."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from openbell.errors import ConfigError, StoreLockedError
from openbell.store.migrations import DAY_TABLES, MIGRATIONS

Rows = Sequence[Mapping[str, Any]] | pd.DataFrame

MEMORY = ":memory:"
TIMEZONE = "America/New_York"

# Backoff while another process holds the file: start short, because flows hold the file only for
# a statement or two, and cap the sleep so a waiter notices soon after the holder lets go.
_FIRST_BACKOFF_S = 0.02
_MAX_BACKOFF_S = 1.0

_LOCK_NOTE = re.compile(r"Conflicting lock is held in .*?\(PID \d+\)")


class Store:
    """One DuckDB file (or an in-memory database) behind short-lived connections.

    DuckDB lets a single process open a file for writing, and that writer also shuts out read-only
    openers in other processes. Every Prefect flow run is its own process and users query while
    flows run, so each call opens a connection, does its work and closes it again, and opening
    retries with backoff while another process holds the lock.

    Naive datetimes written to TIMESTAMPTZ columns are read as New York wall-clock time (the
    session time zone); timestamps come back tz-aware in America/New_York.
    """

    def __init__(self, path: str | Path, *, lock_timeout: float = 30.0) -> None:
        self.lock_timeout = lock_timeout
        self._batching = False
        self._held: duckdb.DuckDBPyConnection | None = None
        self._before_commit: list[Callable[[], None]] = []
        self._schema_cache: dict[str, tuple[dict[str, str], list[str]]] = {}
        self._memory: duckdb.DuckDBPyConnection | None = None
        if str(path) == MEMORY:
            self.path: Path | str = MEMORY
            # An in-memory database lives only as long as a connection to it, so keep one and hand
            # out cursors (separate connections to the same database) from it.
            self._memory = duckdb.connect(MEMORY)
        else:
            self.path = Path(path)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- connections ----------------------------------------------------------------------------

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open a connection for one unit of work and close it afterwards.

        Raises:
            ConfigError: read_only was asked for and the file does not exist yet.
            StoreLockedError: another process kept the file locked for longer than lock_timeout.
        """
        if self._held is not None:
            yield self._held
            return
        if self._batching:
            self._held = self._open(read_only=False)
            self._held.execute("BEGIN TRANSACTION")
            yield self._held
            return
        con = self._open(read_only)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def batch(self, *, all_or_nothing: bool = False) -> Iterator[None]:
        """One connection and one transaction for every store call inside the block, opened on first use.

        A burst of small writes (a hundred orders, one monitor tick) then pays for one open, one
        commit and one close instead of one each per call, and a block that writes nothing opens
        nothing. If the block raises, what it wrote so far is still committed (nothing already sent
        to a broker goes unrecorded) unless DuckDB itself aborted the transaction; with
        `all_or_nothing` it is rolled back instead (a record made of many rows, such as a backtest,
        is written whole or not at all). Keep blocks short: the file stays locked for other
        processes until the block ends.
        """
        if self._batching:
            yield
            return
        self._batching = True
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            try:
                for flush in self._before_commit:
                    flush()
            except BaseException:
                failed = True
                raise
            finally:  # even when something failed: a held connection left behind would take every later call
                self._before_commit.clear()
                self._batching = False
                self._end_held(quiet=failed, roll_back=failed and all_or_nothing)

    def _end_held(self, *, quiet: bool, roll_back: bool = False) -> None:
        """Commit (or roll back) and close the batch's connection; a failed commit rolls back, and raises unless `quiet`.

        `quiet` is for a batch that is already failing: its own error matters more than the commit's.
        """
        held, self._held = self._held, None
        if held is None:
            return
        try:
            if roll_back:
                _rollback_quietly(held)
                return
            held.execute("COMMIT")
        except duckdb.Error:
            _rollback_quietly(held)
            if not quiet:
                raise
        finally:
            held.close()

    def before_commit(self, flush: Callable[[], None]) -> None:
        """Run `flush` (which writes through this store) once at the end of the current batch, or now.

        Lets a caller that changes state many times in a batch write it once, just before the commit.
        """
        if not self._batching:
            flush()
        elif flush not in self._before_commit:
            self._before_commit.append(flush)

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        con = self._memory.cursor() if self._memory is not None else self._open_file(read_only)
        con.execute(f"SET TimeZone = '{TIMEZONE}'")
        return con

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside BEGIN/COMMIT; rolled back if the block raises. Inside batch(), the batch's."""
        if self._batching:
            with self.connect() as con:
                yield con
            return
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                _rollback_quietly(con)
                raise
            con.execute("COMMIT")

    def _open_file(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        path = self.path
        assert isinstance(path, Path)
        if read_only and not path.exists():
            raise ConfigError(_missing_message(path))
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout
        delay = _FIRST_BACKOFF_S
        while True:
            try:
                return duckdb.connect(str(path), read_only=read_only)
            except duckdb.IOException as exc:
                text = str(exc)
                if "does not exist" in text:
                    raise ConfigError(_missing_message(path)) from exc
                if "lock" not in text.lower():
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreLockedError(_locked_message(path, text, self.lock_timeout)) from exc
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, _MAX_BACKOFF_S)

    # -- schema ---------------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply pending migrations in version order, each in its own transaction.

        Returns the names of the migrations applied (empty when the schema is current).

        Raises:
            ConfigError: the file was migrated by a newer openbell than this one.
        """
        applied: list[str] = []
        self._schema_cache.clear()
        with self.connect() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)"
            )
            done = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
            known = {m.version for m in MIGRATIONS}
            if unknown := sorted(done - known):
                raise ConfigError(
                    f"{self.path} has schema versions {unknown} that this openbell does not know "
                    f"(it knows up to {max(known)}); upgrade openbell or point it at another file."
                )
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                con.execute("BEGIN TRANSACTION")
                try:
                    con.execute(migration.sql)
                    con.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, current_timestamp)",
                        [migration.version, migration.name],
                    )
                except BaseException:
                    _rollback_quietly(con)
                    raise
                con.execute("COMMIT")
                applied.append(migration.name)
        return applied

    # -- reads and raw statements ---------------------------------------------------------------

    def execute(self, sql: str, params: Sequence | None = None) -> None:
        """Run one statement (or several, without params) that returns nothing the caller needs."""
        with self.connect() as con:
            con.execute(sql, params)

    def query(self, sql: str, params: Sequence | None = None) -> list[tuple]:
        """Rows as tuples; DECIMAL columns come back as exact Decimals."""
        with self.connect() as con:
            return con.execute(sql, params).fetchall()

    def query_df(self, sql: str, params: Sequence | None = None, *, read_only: bool = False) -> pd.DataFrame:
        """Rows as a DataFrame, for analytics: DuckDB hands DECIMAL columns over as float64."""
        with self.connect(read_only=read_only) as con:
            return con.execute(sql, params).df()

    # -- writes ---------------------------------------------------------------------------------

    def insert(self, table: str, rows: Rows) -> int:
        """Insert rows (dicts or a DataFrame; columns by name, a subset is fine); returns rows inserted.

        Raises:
            ValueError: unknown table or column.
        """
        with self.connect() as con:
            return _insert(con, table, _as_frame(rows), columns=self._table(con, table)[0])

    def replace(self, table: str, rows: Rows, where: Mapping[str, Any]) -> int:
        """Atomically delete the rows matching `where` (column = value, ANDed) and insert `rows`.

        Returns the number of rows deleted. If the insert fails the old rows stay.

        Raises:
            ValueError: unknown table or column, or an empty `where` (which would clear the table).
        """
        if not where:
            raise ValueError(
                f"replace({table!r}) needs at least one column in `where`; "
                "to empty a table on purpose use execute('DELETE FROM ...')"
            )
        frame = _as_frame(rows)
        with self.transaction() as con:
            columns = self._table(con, table)[0]
            _check_names(table, where.keys(), columns)
            clauses, params = [], []
            for name, value in where.items():
                if value is None:
                    clauses.append(f"{_ident(name)} IS NULL")
                else:
                    clauses.append(f"{_ident(name)} = ?")
                    params.append(value)
            deleted = con.execute(f"DELETE FROM {_ident(table)} WHERE {' AND '.join(clauses)}", params).fetchone()[0]
            _insert(con, table, frame, columns=columns)
        return deleted

    def upsert(self, table: str, rows: Rows) -> int:
        """Insert rows, replacing stored rows with the same primary key; returns rows written.

        Columns absent from `rows` keep their stored values for keys that already exist (DuckDB's
        INSERT OR REPLACE updates the columns it is given). Within one call the last row for a key
        wins.

        Raises:
            ValueError: unknown table or column, a table without a primary key, or rows that lack
                a primary-key column.
        """
        frame = _as_frame(rows)
        with self.connect() as con:
            columns, key = self._table(con, table)
            if not key:
                raise ValueError(f"upsert needs a primary key and table {table!r} has none; use insert")
            if len(frame.columns) and (missing := [k for k in key if k not in frame.columns]):
                raise ValueError(f"upsert into {table!r} needs the primary-key columns {missing}")
            if len(frame):
                # DuckDB refuses to update the same row twice in one statement.
                frame = frame.drop_duplicates(subset=key, keep="last")
            return _insert(con, table, frame, columns=columns, or_replace=True)

    def _table(self, con: duckdb.DuckDBPyConnection, table: str) -> tuple[dict[str, str], list[str]]:
        """A table's columns and primary key, looked up once per Store (the schema only changes in migrate)."""
        if table not in self._schema_cache:
            self._schema_cache[table] = (_columns(con, table), _primary_key(con, table))
        return self._schema_cache[table]

    def delete_day(self, trade_date: date) -> dict[str, int]:
        """Delete one trading day from every table in DAY_TABLES in one transaction.

        Returns rows deleted per table, listing only tables that had rows for that day.
        """
        counts: dict[str, int] = {}
        with self.transaction() as con:
            for table in DAY_TABLES:
                (n,) = con.execute(f"DELETE FROM {_ident(table)} WHERE trade_date = ?", [trade_date]).fetchone()
                if n:
                    counts[table] = n
        return counts


# -- helpers ------------------------------------------------------------------------------------


def _rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    # The original error matters more; and the connection is closed right after, which discards
    # any transaction that a failed ROLLBACK might have left open.
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass


def _missing_message(path: Path) -> str:
    return f"no DuckDB file at {path} to open read-only; check the path, or let a flow create it first (Store.migrate())"


def _locked_message(path: Path, duckdb_text: str, timeout: float) -> str:
    match = _LOCK_NOTE.search(duckdb_text)
    note = match.group(0) if match else duckdb_text.removeprefix("IO Error: ")
    return (
        f"DuckDB file {path} stayed locked by another process for {timeout:g}s "
        f'(DuckDB: "{note}"). Stop that process, or wait for it to finish and retry.'
    )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column name -> DuckDB type for a table in the main schema; ValueError if there is no such table."""
    found = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    if not found:
        tables = sorted(
            t
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
        )
        raise ValueError(f"unknown table {table!r}; tables are: {', '.join(tables) or '(none)'}")
    return dict(found)


def _check_names(table: str, names: Any, columns: Mapping[str, str]) -> None:
    # Names are interpolated into SQL, so only names taken from the live schema may pass.
    unknown = [n for n in names if n not in columns]
    if unknown:
        raise ValueError(
            f"unknown column(s) {', '.join(map(repr, unknown))} for table {table!r}; columns are: {', '.join(columns)}"
        )


def _primary_key(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    row = con.execute(
        "SELECT constraint_column_names FROM duckdb_constraints() "
        "WHERE schema_name = 'main' AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
        [table],
    ).fetchone()
    return list(row[0]) if row else []


def _as_frame(rows: Rows) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        return rows
    return pd.DataFrame.from_records(list(rows))


def _insert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    or_replace: bool = False,
) -> int:
    """Insert a frame in one statement: register it as a view and INSERT ... SELECT with casts."""
    columns = columns if columns is not None else _columns(con, table)
    _check_names(table, frame.columns, columns)
    if frame.empty:
        return 0
    frame = _prepare(frame, columns)
    view = f"_openbell_rows_{uuid.uuid4().hex}"
    names = ", ".join(_ident(c) for c in frame.columns)
    # Casting to the column's own type makes the result independent of how pandas inferred each
    # column (ints with gaps arrive as floats, Decimals as strings, and so on).
    select = ", ".join(f"CAST({_ident(c)} AS {columns[c]})" for c in frame.columns)
    verb = "INSERT OR REPLACE" if or_replace else "INSERT"
    con.register(view, frame)
    try:
        (count,) = con.execute(f"{verb} INTO {_ident(table)} ({names}) SELECT {select} FROM {_ident(view)}").fetchone()
    finally:
        con.unregister(view)
    return count


def _prepare(frame: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """Turn object columns into values DuckDB converts exactly and uniformly.

    DuckDB infers an object column's type from a sample of its values, so Decimals of varying
    scale could be narrowed and a mix of naive and aware datetimes is refused. Strings cast to the
    column type are exact and uniform.
    """
    converted: dict[str, pd.Series] = {}
    for name in frame.columns:
        series = frame[name]
        if series.dtype != object:
            continue
        kind = columns[name]
        if kind.startswith("DECIMAL"):
            converted[name] = series.map(_decimal_text).astype(object)
        elif kind == "TIMESTAMP WITH TIME ZONE":
            converted[name] = series.map(_timestamp_text).astype(object)
        elif kind == "JSON":
            converted[name] = series.map(_json_text).astype(object)
    if not converted:
        return frame
    return frame.assign(**converted)


def _is_null(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _decimal_text(value: Any) -> Any:
    if _is_null(value):
        return None
    if isinstance(value, (Decimal, int, float)) and not isinstance(value, bool):
        return str(value)  # str(float) is the shortest round-trip repr, e.g. 0.1 -> "0.1"
    return value


def _timestamp_text(value: Any) -> Any:
    if _is_null(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()  # keeps the offset; a naive value is read in the session zone
    return value


def _json_text(value: Any) -> Any:
    if _is_null(value):
        return None
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, default=str)
    return value
