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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from openbell.errors import ConfigError, StoreLockedError

ALIAS = "store"  # the attached lake's name inside each DuckDB connection
INLINING_ROW_LIMIT = 1_000  # writes of up to this many rows stay in the catalog until housekeeping
TIMEZONE = "America/New_York"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_DUCKDB_MAGIC = b"DUCK"  # at offset 8 of a DuckDB database file
_ATTACH_TIMEOUT_S = 60.0


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
    con.execute(f"SET TimeZone = '{TIMEZONE}'")
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
        self._idle: list[duckdb.DuckDBPyConnection] = []
        self._pool_lock = threading.Lock()
        self._turn = threading.Lock()
        self._local = threading.local()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._pool_lock:
            cursor = self._idle.pop() if self._idle else None
        if cursor is None:
            cursor = self.db.cursor()
            cursor.execute(f"SET TimeZone = '{TIMEZONE}'")
            cursor.execute(f"USE {ALIAS}")
        try:
            yield cursor
        finally:
            with self._pool_lock:
                self._idle.append(cursor)

    def joined(self) -> duckdb.DuckDBPyConnection | None:
        """The cursor of this thread's open write transaction, if it has one."""
        return getattr(self._local, "writing", None)

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
    def writing(self, timeout: float) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside BEGIN, holding the write turn until the block ends; the block commits.

        A block that leaves without COMMIT (an error) is rolled back.

        Raises:
            StoreLockedError: another writer kept the turn for longer than `timeout` seconds.
        """
        with self.turn(timeout), self.cursor() as cursor:
            cursor.execute("BEGIN TRANSACTION")
            self._local.writing = cursor
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
        if file is not None and not read_only:
            # The first ATTACH writes a new catalog's tables: one process at a time.
            file.parent.mkdir(parents=True, exist_ok=True)
            with write_turn(lake, _ATTACH_TIMEOUT_S):
                _sqlite_wal(file)
                con.execute(lake.attach_sql(read_only=False))
        else:
            con.execute(lake.attach_sql(read_only=read_only))
    except duckdb.Error as exc:
        con.close()
        raise ConfigError(f"cannot open the store {lake.describe()}: {str(exc).splitlines()[0]}") from None
    return con


def _check_catalog_file(file: Path, read_only: bool) -> None:
    """A catalog file must be a SQLite file (or absent, when it is about to be made)."""
    if file.is_dir():
        raise ConfigError(f"the store {file} is a folder; give a file path for the store's catalog")
    if not file.exists() or file.stat().st_size == 0:
        if read_only:
            raise ConfigError(f"no store at {file}; check the path, or let a flow create it first")
        return
    with open(file, "rb") as f:
        head = f.read(16)
    if head[8:12] == _DUCKDB_MAGIC:
        raise ConfigError(
            f"{file} is a DuckDB file from an earlier openbell; move its records into a store with "
            f"`openbell store migrate {file} --db {file.with_suffix('.ducklake')}`, then use that one"
        )
    if head != _SQLITE_MAGIC or not _is_ducklake(file):
        raise ConfigError(f"{file} is not an openbell store (not a DuckLake catalog); give another path")


def _is_ducklake(file: Path) -> bool:
    """Whether a SQLite file holds a DuckLake catalog (or nothing yet): never turn another program's file into one."""
    db = sqlite3.connect(f"{file.as_uri()}?mode=ro", uri=True)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError:
        return False
    finally:
        db.close()
    return not tables or "ducklake_metadata" in tables


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
