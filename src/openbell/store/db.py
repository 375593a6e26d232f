"""The store: openbell's records in a DuckLake that readers hold open while the flows write.

Every process attaches the lake once and hands out cursors; each read sees a consistent snapshot
and never waits, and writes take turns (see `store.lake`). Keys and allowed values, which DuckLake
tables cannot declare, are enforced here on every write (`migrations.KEYS`, `migrations.ALLOWED`).
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeAlias

import duckdb
import pandas as pd

from openbell.errors import ConfigError
from openbell.store.lake import ALIAS, BOOKS, Attachment, Lake, attached, one_row, rollback_quietly
from openbell.store.migrations import ALLOWED, DAY_TABLES, KEYS, MIGRATIONS, live_book_sql

Rows: TypeAlias = Sequence[Mapping[str, Any]] | pd.DataFrame
Params: TypeAlias = Sequence[Any] | Mapping[str, Any]  # positional (?) or named ($name) statement parameters
Book = Literal["replay", "live"]  # whose day tables a store's unqualified names are: replays' (main) or live's

MEMORY = ":memory:"

# Column name -> type per lake and table, read once per process (the schema changes only in migrate).
_schemas: dict[tuple[Lake, str], dict[str, str]] = {}
_schemas_lock = threading.Lock()


class Store:
    """openbell's records: one DuckLake (a catalog file and its data files), or one in memory.

    Readers, including a user's notebook holding a transaction open all day, never block the flows,
    and the flows never block readers. Writes take turns, one transaction at a time per lake, and a
    write waits at most `lock_timeout` seconds for its turn.

    Naive datetimes written to TIMESTAMPTZ columns are read as New York wall-clock time (the
    session time zone); timestamps come back tz-aware in America/New_York.
    """

    def __init__(self, location: str | Path | Lake, *, lock_timeout: float = 30.0, book: Book = "replay") -> None:
        if book not in BOOKS:
            raise ValueError(f"book must be one of {BOOKS}, got {book!r}")
        self.lake = location if isinstance(location, Lake) else Lake.at(location)
        self.book = book
        self.path: Path | str = MEMORY if self.lake.catalog == MEMORY else self.lake.sqlite_file or self.lake.describe()
        self.lock_timeout = lock_timeout
        self._batching = False
        self._held: duckdb.DuckDBPyConnection | None = None
        self._held_turn: ExitStack | None = None
        self._reading: duckdb.DuckDBPyConnection | None = None
        self._before_commit: list[Callable[[], None]] = []
        # An in-memory lake lives as long as its DuckDB: this Store keeps its own.
        self._own = Attachment(self.lake, read_only=False) if self.lake.catalog == MEMORY else None

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})" if self.book == "replay" else f"Store({str(self.path)!r}, book={self.book!r})"

    def of_book(self, book: Book) -> Store:
        """The same store, its unqualified day tables those of `book`."""
        return self if book == self.book else Store(self.lake, lock_timeout=self.lock_timeout, book=book)

    def _attachment(self, read_only: bool = False) -> Attachment:
        return self._own if self._own is not None else attached(self.lake, read_only=read_only)

    # -- connections ----------------------------------------------------------------------------

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for reads: the open batch's (its transaction), else one in autocommit mode.

        Writes go through execute/insert/replace/upsert, or `transaction()`, which take the write turn.

        Raises:
            ConfigError: the store does not exist yet (read_only) or cannot be opened.
        """
        if self._held is not None:
            yield self._held
            return
        if self._reading is not None:
            yield self._reading
            return
        if self._batching:
            yield self._open_batch()
            return
        attachment = self._attachment(read_only)
        if not read_only and (joined := attachment.joined(self.book)) is not None:
            yield joined
            return
        with attachment.cursor(self.book) as cursor:
            yield cursor

    @contextmanager
    def snapshot(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Every read of this store inside the block sees one snapshot (inside a batch, the batch's transaction).

        For a few reads that must agree with each other; it takes no write turn, and writes inside it are refused.
        """
        if self._held is not None or self._reading is not None or self._batching or self._attachment().joined(self.book):
            with self.connect() as cursor:
                yield cursor
            return
        with self._attachment().cursor(self.book) as cursor:
            cursor.execute("BEGIN TRANSACTION")
            self._reading = cursor
            try:
                yield cursor
            finally:
                self._reading = None
                rollback_quietly(cursor)  # it only read

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside BEGIN/COMMIT holding the write turn; rolled back if the block raises.

        Inside a batch, the batch's transaction; inside another write transaction of this thread, that one.

        Raises:
            StoreLockedError: another writer kept its turn for longer than lock_timeout.
        """
        if self._reading is not None:
            raise RuntimeError("a write inside Store.snapshot(), which only reads; use batch() to read and write")
        attachment = self._attachment()
        if self._batching or self._held is not None or attachment.joined(self.book) is not None:
            with self.connect() as cursor:
                yield cursor
            return
        with attachment.writing(self.lock_timeout, self.book) as cursor:
            yield cursor
            cursor.execute("COMMIT")

    @contextmanager
    def batch(self, *, all_or_nothing: bool = False) -> Iterator[None]:
        """One write transaction for every store call inside the block, opened on first use.

        A burst of small writes (a hundred orders, one monitor tick) then pays for one commit
        instead of one per call, and a block that touches nothing opens nothing. If the block
        raises, what it wrote so far is still committed (nothing already sent to a broker goes
        unrecorded) unless DuckDB itself aborted the transaction; with `all_or_nothing` it is rolled
        back instead (a record made of many rows, such as a backtest, is written whole or not at
        all). Keep blocks short: other writers wait for the block to end (readers never do).
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
            finally:  # even when something failed: a held transaction left behind would take every later call
                self._before_commit.clear()
                self._batching = False
                self._end_batch(quiet=failed, roll_back=failed and all_or_nothing)

    def _open_batch(self) -> duckdb.DuckDBPyConnection:
        """Take the batch's transaction (joining this thread's open one, if any) and return its cursor."""
        attachment = self._attachment()
        if (joined := attachment.joined(self.book)) is not None:  # another store's write transaction in this thread
            self._held = joined
            return joined
        turn = ExitStack()
        held = turn.enter_context(attachment.writing(self.lock_timeout, self.book))
        self._held, self._held_turn = held, turn
        return held

    def _end_batch(self, *, quiet: bool, roll_back: bool = False) -> None:
        """Commit (or roll back) the batch's transaction; a failed commit rolls back, and raises unless `quiet`.

        `quiet` is for a batch that is already failing: its own error matters more than the commit's.
        A batch that joined another transaction leaves the commit to that transaction's owner.
        """
        held, turn = self._held, self._held_turn
        self._held = self._held_turn = None
        if held is None or turn is None:
            return
        try:
            if roll_back:
                rollback_quietly(held)
            else:
                held.execute("COMMIT")
        except duckdb.Error:
            rollback_quietly(held)
            if not quiet:
                raise
        finally:
            turn.close()

    def before_commit(self, flush: Callable[[], None]) -> None:
        """Run `flush` (which writes through this store) once at the end of the current batch, or now.

        Lets a caller that changes state many times in a batch write it once, just before the commit.
        """
        if not self._batching:
            flush()
        elif flush not in self._before_commit:
            self._before_commit.append(flush)

    # -- schema ---------------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply pending migrations in version order, all in one transaction.

        Returns the names of the migrations applied (empty when the schema is current).

        Raises:
            ConfigError: the store was migrated by a newer openbell than this one.
        """
        if self.book != "replay":  # the live book's schema is made by a migration: migrate from main
            return self.of_book("replay").migrate()
        known = {m.version for m in MIGRATIONS}
        if self._versions() == known:
            return []
        applied: list[str] = []
        with self.transaction() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER NOT NULL, name VARCHAR, applied_at TIMESTAMPTZ)"
            )
            done = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
            if unknown := sorted(done - known):
                raise ConfigError(
                    f"{self.path} has schema versions {unknown} that this openbell does not know "
                    f"(it knows up to {max(known)}); upgrade openbell or point it at another store."
                )
            for migration in MIGRATIONS:
                if migration.version not in done:
                    con.execute(migration.sql)
                    con.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, current_timestamp)",
                        [migration.version, migration.name],
                    )
                    applied.append(migration.name)
            live = {t for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = 'live'", [ALIAS]
            ).fetchall()}  # fmt: skip
            if live and (missing := live_book_sql(live)):  # a day table a later migration added: in the live book too
                con.execute(missing)
        with _schemas_lock:
            for key in [k for k in _schemas if k[0] == self.lake]:
                del _schemas[key]
        return applied

    def _versions(self) -> set[int]:
        with self.connect() as con:
            (found,) = one_row(
                con,
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_catalog = ? AND table_name = 'schema_migrations'",
                [ALIAS],
            )
            return {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()} if found else set()

    # -- reads and raw statements ---------------------------------------------------------------

    def execute(self, sql: str, params: Params | None = None) -> None:
        """Run one statement (or several, without params) that returns nothing the caller needs, as a write."""
        with self.transaction() as con:
            con.execute(sql, params)

    def query(self, sql: str, params: Params | None = None) -> list[tuple]:
        """Rows as tuples; DECIMAL columns come back as exact Decimals."""
        with self.connect() as con:
            return con.execute(sql, params).fetchall()

    def query_df(self, sql: str, params: Params | None = None, *, read_only: bool = False) -> pd.DataFrame:
        """Rows as a DataFrame, for analytics: DuckDB hands DECIMAL columns over as float64.

        `read_only` reads through a read-only attachment, so the statement cannot change anything.
        """
        with self.connect(read_only=read_only) as con:
            return con.execute(sql, params).df()

    # -- writes ---------------------------------------------------------------------------------

    def insert(self, table: str, rows: Rows) -> int:
        """Insert rows (dicts or a DataFrame; columns by name, a subset is fine); returns rows inserted.

        Raises:
            ValueError: unknown table or column, a key that is repeated or already stored, or a value
                a column does not allow.
        """
        frame = _as_frame(rows)
        with self.transaction() as con:
            return _insert(con, table, frame, self._columns(con, table))

    def replace(self, table: str, rows: Rows, where: Mapping[str, Any]) -> int:
        """Atomically delete the rows matching `where` (column = value, ANDed) and insert `rows`.

        Returns the number of rows deleted. If the insert fails the old rows stay.

        Raises:
            ValueError: unknown table or column, an empty `where` (which would clear the table), or
                rows the insert refuses.
        """
        if not where:
            raise ValueError(
                f"replace({table!r}) needs at least one column in `where`; "
                "to empty a table on purpose use execute('DELETE FROM ...')"
            )
        frame = _as_frame(rows)
        with self.transaction() as con:
            columns = self._columns(con, table)
            _check_names(table, where.keys(), columns)
            clauses, params = [], []
            for name, value in where.items():
                if value is None:
                    clauses.append(f"{_ident(name)} IS NULL")
                else:
                    clauses.append(f"{_ident(name)} = ?")
                    params.append(value)
            (deleted,) = one_row(con, f"DELETE FROM {_ident(table)} WHERE {' AND '.join(clauses)}", params)
            _insert(con, table, frame, columns)
        return deleted

    def upsert(self, table: str, rows: Rows) -> int:
        """Insert rows, replacing stored rows with the same key (`migrations.KEYS`); returns rows written.

        Columns absent from `rows` keep their stored values for keys that already exist. Within one
        call the last row for a key wins.

        Raises:
            ValueError: unknown table or column, a table without a key, rows that lack a key column,
                or a value a column does not allow.
        """
        frame = _as_frame(rows)
        key = KEYS.get(table)
        with self.transaction() as con:
            columns = self._columns(con, table)
            if not key:
                raise ValueError(f"upsert needs a key and table {table!r} has none; use insert")
            _check_names(table, frame.columns, columns)
            if frame.empty:
                return 0
            if missing := [k for k in key if k not in frame.columns]:
                raise ValueError(f"upsert into {table!r} needs the key columns {missing}")
            frame = frame.drop_duplicates(subset=list(key), keep="last")
            return _merge(con, table, frame, columns, key)

    def _columns(self, con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
        """A table's columns and their types, looked up once per process."""
        cache_key = (self.lake, table)
        if (found := _schemas.get(cache_key)) is None:
            found = _columns(con, table)
            with _schemas_lock:
                _schemas[cache_key] = found
        return found

    # -- housekeeping ---------------------------------------------------------------------------

    def housekeep(
        self, *, keep_snapshots_days: float = 7.0, merge_above_files: int | None = None, flush: bool = False
    ) -> Housekeeping:
        """Write the rows kept in the catalog out to Parquet, merge small files, expire old snapshots.

        Each small write lives in the catalog until now; here every table's new rows become one
        Parquet file (a day adds about 20). Once the store holds more than `merge_above_files` data
        files (None: never; 0: now), each table's files are merged into few. A reader holding a
        transaction that began before a merge does not see the merged rows until it begins a new
        one (a query outside an explicit transaction always does), which is why merges are rare.
        Snapshots older than `keep_snapshots_days` expire, and files only they used are deleted.

        `flush` is by hand only (`openbell store housekeep --merge`): DuckLake 1.4's flush can hide the
        flushed rows from a reader that reads the catalog at that moment, so the schedule never flushes;
        small writes then simply stay in the catalog (no small files are made).
        """
        attachment = self._attachment()
        older_than = "now() - to_microseconds(CAST(? AS BIGINT))"
        kept_us = round(keep_snapshots_days * 86_400 * 1_000_000)
        with attachment.turn(self.lock_timeout), attachment.cursor() as con:
            before = _file_stats(con)
            if flush:
                con.execute(f"CALL ducklake_flush_inlined_data('{ALIAS}')")
            merged = merge_above_files is not None and _file_stats(con)[0] > merge_above_files
            if merged:
                con.execute(f"CALL ducklake_merge_adjacent_files('{ALIAS}')")
            expired = len(
                con.execute(f"CALL ducklake_expire_snapshots('{ALIAS}', older_than => {older_than})", [kept_us]).fetchall()
            )
            con.execute(f"CALL ducklake_cleanup_old_files('{ALIAS}', older_than => {older_than})", [kept_us])
            after = _file_stats(con)
        return Housekeeping(before[0], before[1], after[0], after[1], expired, merged)

    def delete_day(self, trade_date: date) -> dict[str, int]:
        """Delete one trading day from every table in DAY_TABLES in one transaction.

        Returns rows deleted per table, listing only tables that had rows for that day.
        """
        counts: dict[str, int] = {}
        with self.transaction() as con:
            for table in DAY_TABLES:
                (n,) = one_row(con, f"DELETE FROM {_ident(table)} WHERE trade_date = ?", [trade_date])
                if n:
                    counts[table] = n
        return counts


@dataclass(frozen=True, slots=True)
class Housekeeping:
    """What `Store.housekeep` did: the data files (count and bytes) before and after, snapshots expired."""

    files_before: int
    bytes_before: int
    files: int
    bytes: int
    snapshots_expired: int
    merged: bool = False

    def __str__(self) -> str:
        return (
            f"{self.files} data files, {self.bytes / 1e6:.2f} MB (before: {self.files_before}, "
            f"{self.bytes_before / 1e6:.2f} MB{'; small files merged' if self.merged else ''}); "
            f"{self.snapshots_expired} old snapshots expired"
        )


# -- helpers ------------------------------------------------------------------------------------


def _file_stats(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """The store's data and delete files that the catalog lists (so they are on disk): how many, how many bytes."""
    meta = f"__ducklake_metadata_{ALIAS}"
    count, size = one_row(
        con,
        f"SELECT count(*), coalesce(sum(file_size_bytes), 0)::BIGINT FROM ("
        f"SELECT file_size_bytes FROM {meta}.ducklake_data_file "
        f"UNION ALL SELECT file_size_bytes FROM {meta}.ducklake_delete_file)",
    )
    return count, size


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column name -> DuckDB type for a table of the store; ValueError if there is no such table."""
    found = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = ? AND table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
        [ALIAS, table],
    ).fetchall()
    if not found:
        tables = sorted(
            t
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = 'main'",
                [ALIAS],
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


def _check_allowed(table: str, frame: pd.DataFrame) -> None:
    for (in_table, column), allowed in ALLOWED.items():
        if in_table != table or column not in frame.columns:
            continue
        values = frame[column]
        bad = values[values.notna() & ~values.isin(allowed)]
        if len(bad):
            raise ValueError(
                f"{table}.{column} must be one of {', '.join(map(repr, allowed))} (its CHECK rule); got {bad.iloc[0]!r}"
            )


def _as_frame(rows: Rows) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        return rows
    return pd.DataFrame.from_records(list(rows))


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, columns: Mapping[str, str]) -> Iterator[str]:
    """The frame as a relation of the column types, for one statement: `SELECT ... FROM <yielded>`.

    Casting to the column's own type makes the result independent of how pandas inferred each
    column (ints with gaps arrive as floats, Decimals as strings, and so on).
    """
    view = f"_openbell_rows_{uuid.uuid4().hex}"
    con.register(view, _prepare(frame, columns))
    select = ", ".join(f"CAST({_ident(c)} AS {columns[c]}) AS {_ident(c)}" for c in frame.columns)
    try:
        yield f"(SELECT {select} FROM temp.main.{_ident(view)})"
    finally:
        con.unregister(view)


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, columns: Mapping[str, str]) -> int:
    """Insert a frame in one statement, after checking its names, allowed values and keys."""
    _check_names(table, frame.columns, columns)
    if frame.empty:
        return 0
    _check_allowed(table, frame)
    key = KEYS.get(table)
    if key and all(k in frame.columns for k in key) and frame.duplicated(subset=list(key)).any():
        repeated = frame[frame.duplicated(subset=list(key))].iloc[0]
        raise ValueError(f"duplicate key {_key_text(key, [repeated[k] for k in key])} in the rows for {table!r}")
    names = ", ".join(_ident(c) for c in frame.columns)
    with _registered(con, frame, columns) as rows:
        if key and all(k in frame.columns for k in key):
            on = " AND ".join(f"t.{_ident(k)} = r.{_ident(k)}" for k in key)
            keys = ", ".join(f"r.{_ident(k)}" for k in key)
            clash = con.execute(f"SELECT {keys} FROM {rows} AS r JOIN {_ident(table)} AS t ON {on} LIMIT 1").fetchone()
            if clash:
                raise ValueError(f"duplicate key {_key_text(key, clash)}: {table!r} already has that row")
        (count,) = one_row(con, f"INSERT INTO {_ident(table)} ({names}) SELECT {names} FROM {rows}")
    return count


def _merge(
    con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, columns: Mapping[str, str], key: Sequence[str]
) -> int:
    """Insert the frame's rows, replacing the stored rows with the same keys (keeping the columns it lacks).

    A delete and an insert rather than MERGE: DuckLake keeps small inserts and deletes in the catalog
    (no Parquet file per write) but writes a file for every MERGE.
    """
    _check_allowed(table, frame)
    on = " AND ".join(f"t.{_ident(k)} = r.{_ident(k)}" for k in key)
    kept = [c for c in columns if c not in frame.columns]
    names = ", ".join(_ident(c) for c in (*frame.columns, *kept))
    values = ", ".join([f"r.{_ident(c)}" for c in frame.columns] + [f"t.{_ident(c)}" for c in kept])
    matches = " AND ".join(f"{_ident(table)}.{_ident(k)} = r.{_ident(k)}" for k in key)
    with _registered(con, frame, columns) as rows:
        if not kept:  # every column given: the stored rows go, the new ones come
            con.execute(f"DELETE FROM {_ident(table)} WHERE EXISTS (SELECT 1 FROM {rows} AS r WHERE {matches})")
            con.execute(f"INSERT INTO {_ident(table)} ({names}) SELECT {names} FROM {rows}")
            return len(frame)
        # The new rows, completed with the stored values of the columns the frame lacks.
        staged = f"_openbell_merge_{uuid.uuid4().hex}"
        con.execute(f"CREATE TEMP TABLE {staged} AS SELECT {values} FROM {rows} AS r LEFT JOIN {_ident(table)} AS t ON {on}")
        try:
            con.execute(f"DELETE FROM {_ident(table)} WHERE EXISTS (SELECT 1 FROM {rows} AS r WHERE {matches})")
            con.execute(f"INSERT INTO {_ident(table)} ({names}) SELECT * FROM temp.main.{staged}")
        finally:
            con.execute(f"DROP TABLE temp.main.{staged}")
    return len(frame)


def _key_text(key: Sequence[str], values: Sequence[Any]) -> str:
    return "(" + ", ".join(f"{k}={v!r}" for k, v in zip(key, values, strict=True)) + ")"


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
