"""Where the store lives and how a process reaches it: a DuckLake catalog, its data files, DuckDB's extensions.

The store is a DuckLake: a catalog of tables and snapshots in a SQLite file (in WAL mode) or in
PostgreSQL, and Parquet data files in a folder or on object storage (small writes are kept in the
catalog until housekeeping writes them out). Any number of processes attach it at once: every
transaction reads a snapshot, so a reader holding a transaction open all day never blocks a writer,
and a writer never blocks a reader. Writers on one SQLite catalog take turns through a lock file next
to it (SQLite refuses a writer that read before another one committed); a PostgreSQL catalog settles
concurrent writers itself.

DuckDB's extensions come from their Python packages (duckdb-ext-ducklake, -sqlite, -postgres, -httpfs),
loaded from the package folder: nothing is ever downloaded.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from openbell.core.types import NEW_YORK_TZ
from openbell.errors import ConfigError, StoreLockedError

ALIAS = "store"  # the attached lake's name inside each DuckDB connection
LIVE = "live"  # the schema of the live book: what was traded live; replays and research use the main schema
BOOKS = ("replay", "live")
INLINING_ROW_LIMIT = 1_000  # writes of up to this many rows stay in the catalog until housekeeping
_SQLITE_MAGIC = b"SQLite format 3\x00"
_DUCKDB_MAGIC = b"DUCK"  # at offset 8 of a DuckDB database file
_ATTACH_TIMEOUT_S = 60.0
_SQLITE_BUSY_S = 5.0  # how long a check of a SQLite file waits for another program's lock on it


@dataclass(frozen=True, slots=True)
class Lake:
    """One DuckLake: its catalog and where its data files go.

    `catalog` is "sqlite:/abs/path/openbell.ducklake", "postgres:dbname=... host=...", or ":memory:" (a
    lake that lives as long as this process, for tests); `data_path` ends with a "/".
    """

    catalog: str
    data_path: str

    @classmethod
    def at(cls, path: Path | str, *, catalog: str | None = None, data_path: str | None = None) -> Lake:
        """The lake whose SQLite catalog is the file `path` (data files in `<path>.files/`), unless `catalog` says else."""
        if catalog:
            return cls.shared(catalog, data_path)
        if str(path) == ":memory:":
            return cls(":memory:", _folder(data_path or tempfile.mkdtemp(prefix="openbell-lake-")))
        file = Path(path).expanduser().absolute()
        return cls(f"sqlite:{file}", _folder(data_path or f"{file}.files"))

    @classmethod
    def shared(cls, catalog: str, data_path: str | None) -> Lake:
        """A lake for several machines: a PostgreSQL catalog ("postgres:<libpq string>") and a shared data path."""
        if not data_path:
            raise ConfigError(
                f"a {catalog.split(':', 1)[0]} catalog needs a data path for the files: set OPENBELL_DATA__DATA_PATH "
                "to a folder every machine sees, or s3://bucket/prefix/"
            )
        return cls(catalog, _folder(data_path))

    @property
    def sqlite_file(self) -> Path | None:
        return Path(self.catalog.removeprefix("sqlite:")) if self.catalog.startswith("sqlite:") else None

    def describe(self) -> str:
        return str(self.sqlite_file) if self.sqlite_file else self.catalog.split(" password=")[0]

    def user_attach_sql(self) -> str:
        """The ATTACH a user types in the DuckDB CLI: read-only, with the files where they are now."""
        return (
            f"ATTACH 'ducklake:{_quoted(self.catalog)}' AS {ALIAS} "
            f"(DATA_PATH '{_quoted(self.data_path)}', OVERRIDE_DATA_PATH true, READ_ONLY)"
        )

    def attach_sql(self, *, read_only: bool, alias: str = ALIAS) -> str:
        """The ATTACH statement of openbell's own connections (a new catalog learns its data path from it)."""
        source = "ducklake::memory:" if self.catalog == ":memory:" else f"ducklake:{self.catalog}"
        # The data path is where the files are now (a store moved with its folder works): it overrides the
        # one the catalog was made with; the files' own paths are relative to it.
        options = [f"DATA_PATH '{_quoted(self.data_path)}'", "OVERRIDE_DATA_PATH true"]
        if read_only:
            options.append("READ_ONLY")
        else:
            options.append(f"DATA_INLINING_ROW_LIMIT {INLINING_ROW_LIMIT}")
        return f"ATTACH '{_quoted(source)}' AS {alias} ({', '.join(options)})"

    def exists(self) -> bool:
        file = self.sqlite_file
        return file is None or (file.exists() and file.stat().st_size > 0)


def _folder(path: str) -> str:
    return path if path.endswith("/") else f"{path}/"


def _quoted(text: str) -> str:
    return text.replace("'", "''")


def extension_directory() -> Path:
    """The folder holding DuckDB's extensions from the duckdb-ext-* packages (DuckDB's own layout inside)."""
    import duckdb_ext  # a namespace package: the extensions are data files in it

    for folder in duckdb_ext.__path__:
        candidate = Path(folder) / "extensions"
        if candidate.is_dir():
            return candidate
    raise ConfigError("DuckDB's extensions are not installed: run `uv sync` (the duckdb-ext-* packages)")


def new_duckdb() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that loads extensions from the installed packages only, never from the network."""
    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "extension_directory": str(extension_directory()),
        },
    )
    con.execute(f"SET TimeZone = '{NEW_YORK_TZ}'")
    return con


class Attachment:
    """One DuckDB with a lake attached, the cursors it hands out, and this process's turn to write.

    A cursor is a connection of its own to the DuckDB (its own transaction), already in the lake and
    the New York time zone; cursors go back to a pool when done, since making one costs a catalog
    read. A write transaction holds the lake's write turn: one thread of this process at a time, and
    one process at a time through the lock file (`write_turn`). A thread that writes again while its
    own write transaction is open joins that transaction instead of waiting for itself.
    """

    def __init__(self, lake: Lake, *, read_only: bool) -> None:
        self.lake = lake
        self.read_only = read_only
        self.db = _attach(lake, read_only)
        self.identity = _file_identity(lake)
        self._idle: dict[str, list[duckdb.DuckDBPyConnection]] = {book: [] for book in BOOKS}
        self._pool_lock = threading.Lock()
        self._turn = threading.Lock()
        self._local = threading.local()

    @contextmanager
    def cursor(self, book: str = "replay") -> Iterator[duckdb.DuckDBPyConnection]:
        """A pooled cursor whose unqualified table names are the `book`'s: the live book's tables in schema
        `live` (the others, such as `runs`, in main), the replay book's in main."""
        idle = self._idle[book]
        with self._pool_lock:
            cursor = idle.pop() if idle else None
        if cursor is None:
            cursor = self.db.cursor()
            cursor.execute(f"SET TimeZone = '{NEW_YORK_TZ}'")
            cursor.execute(f"USE {ALIAS}")
            if book == LIVE:
                cursor.execute(f"SET search_path = '{ALIAS}.{LIVE},{ALIAS}.main'")
        try:
            yield cursor
        finally:
            with self._pool_lock:
                idle.append(cursor)

    def joined(self, book: str = "replay") -> duckdb.DuckDBPyConnection | None:
        """The cursor of this thread's open write transaction, if it has one.

        Raises:
            RuntimeError: that transaction writes the other book (one transaction writes one book).
        """
        cursor = getattr(self._local, "writing", None)
        if cursor is not None and self._local.book != book:
            raise RuntimeError(f"a write to the {book} book inside a transaction of the {self._local.book} book")
        return cursor

    @contextmanager
    def turn(self, timeout: float) -> Iterator[None]:
        """Hold the lake's write turn: this process's other threads and other processes wait.

        Raises:
            StoreLockedError: another writer kept the turn for longer than `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        if not self._turn.acquire(timeout=timeout):
            raise StoreLockedError(_busy_message(self.lake, timeout, "thread"))
        try:
            with write_turn(self.lake, max(deadline - time.monotonic(), 0.0)):
                yield
        finally:
            self._turn.release()

    @contextmanager
    def writing(self, timeout: float, book: str = "replay") -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside BEGIN, holding the write turn until the block ends; the block commits.

        A block that leaves without COMMIT (an error) is rolled back.

        Raises:
            StoreLockedError: another writer kept the turn for longer than `timeout` seconds.
        """
        with self.turn(timeout), self.cursor(book) as cursor:
            cursor.execute("BEGIN TRANSACTION")
            self._local.writing, self._local.book = cursor, book
            try:
                yield cursor
            except BaseException:
                rollback_quietly(cursor)
                raise
            finally:
                self._local.writing = None


def rollback_quietly(cursor: duckdb.DuckDBPyConnection) -> None:
    """Roll back whatever is open; the error that led here matters more than one from the rollback."""
    try:
        cursor.execute("ROLLBACK")
    except duckdb.Error:
        pass


def one_row(cursor: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> tuple[Any, ...]:
    """The row of a statement that always returns exactly one: an aggregate, or a DELETE's or INSERT's count."""
    row = cursor.execute(sql, params).fetchone()
    assert row is not None, f"no row from: {sql}"
    return row


_attached: dict[tuple[Lake, bool], Attachment] = {}
_attaching = threading.Lock()


def attached(lake: Lake, *, read_only: bool) -> Attachment:
    """This process's attachment of `lake` (read-only or not), made on first use.

    Raises:
        ConfigError: the catalog is missing (read-only), not a DuckLake, or cannot be reached.
    """
    key = (lake, read_only)
    with _attaching:
        found = _attached.get(key)
        if found is None or found.identity != _file_identity(lake):  # made again since: attach the new one
            found = _attached[key] = Attachment(lake, read_only=read_only)
        return found


def _file_identity(lake: Lake) -> tuple[int, int] | None:
    """The catalog file's device and inode (None for a catalog that is not a file, or not there)."""
    try:
        stat = lake.sqlite_file.stat() if lake.sqlite_file else None
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino) if stat else None


def detach(lake: Lake) -> None:
    """Close this process's attachments of `lake` (a scratch lake about to be removed)."""
    with _attaching:
        for key in [k for k in _attached if k[0] == lake]:
            _attached.pop(key).db.close()


def _forget_attachments() -> None:
    """A forked child must not use its parent's DuckDB: it attaches again on first use."""
    _attached.clear()


os.register_at_fork(after_in_child=_forget_attachments)


def open_reader(lake: Lake) -> duckdb.DuckDBPyConnection:
    """A DuckDB of its own with `lake` attached read-only, for the caller to keep and close."""
    return _attach(lake, read_only=True)


def _attach(lake: Lake, read_only: bool) -> duckdb.DuckDBPyConnection:
    file = lake.sqlite_file
    if file is not None:
        _check_catalog_file(file, read_only)
    con = new_duckdb()
    kind = "postgres" if lake.catalog.startswith("postgres:") else "sqlite" if file else None
    for extension in ("ducklake", *(["postgres_scanner" if kind == "postgres" else "sqlite_scanner"] if kind else [])):
        con.execute(f"LOAD {extension}")
    if lake.data_path.startswith(("s3://", "gs://", "r2://", "http://", "https://")):
        con.execute("LOAD httpfs")
    try:
        if file is not None and not read_only and (not file.exists() or file.stat().st_size == 0):
            # The first ATTACH writes a new catalog's tables: one process at a time. Attaching one that
            # exists writes nothing, and a writer holding its turn does not delay it.
            file.parent.mkdir(parents=True, exist_ok=True)
            with write_turn(lake, _ATTACH_TIMEOUT_S):
                _sqlite_wal(file)
                con.execute(lake.attach_sql(read_only=False))
        else:
            con.execute(lake.attach_sql(read_only=read_only))
    except duckdb.Error as exc:
        con.close()
        if file is not None and (damage := _sqlite_damage(file)) is not None:
            raise ConfigError(
                f"the store {file} is damaged (SQLite: {damage}); restore it from a backup, or give another path"
            ) from None
        raise ConfigError(f"cannot open the store {lake.describe()}: {str(exc).splitlines()[0]}") from None
    return con


def _check_catalog_file(file: Path, read_only: bool) -> None:
    """A catalog file must be a readable SQLite file with a DuckLake catalog in it, or absent when it is about to be made.

    Nothing here writes, so a file that is refused stays as it was. An empty file is a new store only
    when openbell began making it (its lock file is there: a first write stopped before the catalog's
    first page); anyone else's empty file is left alone.

    Raises:
        ConfigError: a folder, an empty or unreadable file, a DuckDB file, a damaged SQLite file, or
            another program's file.
        StoreLockedError: another program kept the SQLite file locked.
    """
    if file.is_dir():
        raise ConfigError(f"the store {file} is a folder; give a file path for the store's catalog")
    if not file.exists():
        if read_only:
            raise ConfigError(f"no store at {file}; check the path, or let a flow create it first")
        return
    if file.stat().st_size == 0:
        if not lock_file(file).exists():
            raise ConfigError(
                f"{file} is an empty file, not a store; delete it, or give the path of a store "
                "(or of no file yet: a flow makes the store there)"
            )
        if read_only:
            raise ConfigError(f"no store at {file} yet; let a flow create it first")
        return
    try:
        head = _file_head(file)
    except OSError as exc:
        raise ConfigError(f"cannot read the store {file}: {exc.strerror}") from None
    if _is_duckdb(head):
        raise ConfigError(
            f"{file} is a DuckDB file, not a store (a DuckLake catalog); if it holds an earlier openbell's "
            f"records, move them into a store with `openbell store migrate {file} --db {file.with_suffix('.ducklake')}` "
            "and use that one"
        )
    if not _is_sqlite(head):
        raise ConfigError(f"{file} is not an openbell store (not a SQLite file, so no DuckLake catalog); give another path")
    tables = _sqlite_tables(file)
    if tables and "ducklake_metadata" not in tables:  # never turn another program's file into a store
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise ConfigError(
            f"{file} is another program's SQLite file (its tables: {shown}), not an openbell store; give another path"
        )


def _sqlite_tables(file: Path) -> set[str]:
    """The tables of a SQLite file, read without writing to it.

    Raises:
        ConfigError: the file is damaged or cannot be read.
        StoreLockedError: another program kept it locked for _SQLITE_BUSY_S.
    """
    try:
        with closing(_sqlite_read_only(file)) as db:
            return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise _sqlite_error(file, exc) from None


def _sqlite_error(file: Path, exc: sqlite3.Error) -> ConfigError | StoreLockedError:
    """What a SQLite error reading `file` means for the user, by its result code (never by its wording)."""
    code = _primary_code(exc)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreLockedError(
            f"{file} stayed locked by another program for {_SQLITE_BUSY_S:g}s (SQLite: {exc}); "
            "wait for it to finish and retry"
        )
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return ConfigError(
            f"{file} is a damaged SQLite file (SQLite: {exc}); if it is a store's catalog, restore it from a backup, "
            "or give another path"
        )
    return ConfigError(f"cannot read the store {file} (SQLite: {exc})")


def _sqlite_damage(file: Path) -> str | None:
    """SQLite's first complaint about `file` (a quick integrity check, reading only), or None when it finds none."""
    try:
        with closing(_sqlite_read_only(file)) as db:
            (found,) = db.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.Error as exc:
        return str(exc) if _primary_code(exc) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) else None
    return None if found == "ok" else " ".join(str(found).replace("*** in database main ***", "").split())


def _sqlite_read_only(file: Path) -> sqlite3.Connection:
    """A connection that only reads `file`, waiting up to _SQLITE_BUSY_S for another program's lock."""
    return sqlite3.connect(f"{file.as_uri()}?mode=ro", uri=True, timeout=_SQLITE_BUSY_S)


def _primary_code(exc: sqlite3.Error) -> int:
    """The primary result code of a SQLite error (the low byte of an extended one; 0 when it has none)."""
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


def _file_head(path: Path) -> bytes:
    """The first 16 bytes of a file: enough to tell a SQLite file from a DuckDB one.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        return f.read(16)


def _is_sqlite(head: bytes) -> bool:
    return head == _SQLITE_MAGIC


def _is_duckdb(head: bytes) -> bool:
    return head[8:12] == _DUCKDB_MAGIC


def _sqlite_wal(file: Path) -> None:
    """Put a SQLite catalog in WAL mode (once: the mode is kept in the file), so readers never block the writer."""
    db = sqlite3.connect(file)
    try:
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()


@dataclass
class Waits:
    """How often this process's writers found another process writing (and waited for it)."""

    found_busy: int = 0


waits = Waits()


def lock_file(catalog: Path) -> Path:
    """The lock file next to a SQLite catalog that writers take turns on."""
    return catalog.with_name(catalog.name + ".lock")


@contextmanager
def write_turn(lake: Lake, timeout: float) -> Iterator[None]:
    """Hold the lake's write lock (a lock file next to a SQLite catalog) while a transaction writes.

    SQLite fails a writer whose snapshot is older than another's commit, so openbell's writers take
    turns; the lock goes with its process, even one killed with -9. Readers never take it.

    Raises:
        StoreLockedError: another process kept writing for longer than `timeout` seconds.
    """
    file = lake.sqlite_file
    if file is None:
        yield
        return
    fd = os.open(lock_file(file), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, delay = time.monotonic() + timeout, 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waits.found_busy += 1
                if time.monotonic() > deadline:
                    raise StoreLockedError(_busy_message(lake, timeout, "process")) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _busy_message(lake: Lake, timeout: float, who: str) -> str:
    return (
        f"the store {lake.describe()} stayed busy with another {who}'s write for {timeout:g}s; "
        "wait for it to finish and retry (OPENBELL_DATA__LOCK_TIMEOUT_S sets the wait)"
    )
