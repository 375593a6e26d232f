"""A store path or an old file that is not what it should be: one line on stderr, exit code 2, the file untouched.

Each case runs the CLI in its own process, as a user would, with the bad file in a fresh temporary
folder: `query`, `replay` (the synthetic market, which generates nothing here: it is made once for the
module) and `store migrate`. The Prefect API is a closed port, so a replay that got past its checks
would fail in the flow (exit code 1, a traceback) rather than end in the one line these tests expect.
A 30 s wait for a lock that nobody holds would outlast the subprocess timeout.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from openbell.errors import ConfigError
from openbell.store import Store
from openbell.store.convert import import_legacy
from openbell.store.lake import lock_file
from tests.adapters.test_store_import import legacy_file
from tests.fakes.data_folder import synthetic_data_folder

ROOT = Path(__file__).resolve().parents[2]
SESSION = "2025-03-04"  # a session of the synthetic market
NO_RETRY_S = 25.0  # a command that waited out the 30 s lock timeout would take longer
PAGE = 4096  # SQLite's page size in the catalogs openbell makes
MAKE_CATALOG = """
import sys
from openbell.store import Store
store = Store(sys.argv[1])
store.migrate()
store.insert("runs", [{"run_id": "r1", "flow": "scan"}])
"""


# -- the bad files ----------------------------------------------------------------------------------


def random_bytes(path: Path) -> Path:
    path.write_bytes(bytes((i * 7919 + 13) % 251 for i in range(64 * 1024)))  # no file format's magic
    return path


def a_folder(path: Path) -> Path:
    path.mkdir()
    return path


def an_empty_file(path: Path) -> Path:
    path.touch()
    return path


def a_sqlite_file_with_a_foreign_trades_table(path: Path) -> Path:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE trades (id INTEGER, what TEXT)")
        db.execute("INSERT INTO trades VALUES (1, 'a lot of apples')")
        db.commit()
    return path


def a_duckdb_file_with_a_foreign_trades_table(path: Path) -> Path:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE trades (symbol VARCHAR, qty INTEGER, note VARCHAR)")
    con.execute("INSERT INTO trades VALUES ('AAPL', 1, 'not openbell''s')")
    con.close()
    return path


def a_corrupt_duckdb_file(path: Path) -> Path:
    """An earlier openbell's file with every block damaged past its checksum: DuckDB's error says "block"."""
    legacy_file(path)
    data = bytearray(path.read_bytes())
    for block in range(3 * PAGE, len(data), 256 * 1024):  # DuckDB's blocks follow three header pages
        data[block + 300 : block + 364] = bytes(64)
    path.write_bytes(bytes(data))
    return path


def _catalog(path: Path) -> bytes:
    """A real store's catalog, written by a process of its own that has exited (so nothing is in its WAL)."""
    subprocess.run([sys.executable, "-c", MAKE_CATALOG, str(path)], check=True, timeout=120)
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    return path.read_bytes()


def a_truncated_catalog(path: Path) -> Path:
    raw = _catalog(path)
    path.write_bytes(raw[: len(raw) // 2])
    return path


def a_catalog_with_damaged_pages(path: Path) -> Path:
    """A catalog whose list of tables reads well, but whose tables' pages are damaged: DuckLake's ATTACH fails."""
    raw = bytearray(_catalog(path))
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        schema = {n for (n,) in db.execute("SELECT pageno FROM dbstat WHERE name = 'sqlite_schema'")}
    for number in range(2, len(raw) // PAGE + 1):
        if number not in schema:
            raw[(number - 1) * PAGE : (number - 1) * PAGE + 16] = b"\xff" * 16  # its b-tree page header
    path.write_bytes(bytes(raw))
    return path


# What each command says about each kind of file: the words after the file's path.
CASES: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "random bytes": (random_bytes, "is not an openbell store (not a SQLite file", "is not a DuckDB file"),
    "a folder": (a_folder, "is a folder; give a file path", "is a folder, not a DuckDB file"),
    "an empty file": (an_empty_file, "is an empty file, not a store", "is not a DuckDB file"),
    "a foreign SQLite file": (
        a_sqlite_file_with_a_foreign_trades_table,
        "is another program's SQLite file (its tables: trades), not an openbell store",
        "is a SQLite file, not an earlier openbell's DuckDB database",
    ),
    "a foreign DuckDB file": (
        a_duckdb_file_with_a_foreign_trades_table,
        "is a DuckDB file, not a store",
        "is not an earlier openbell's database: its trades table has no trade_date column; nothing was moved",
    ),
    "a corrupt DuckDB file": (
        a_corrupt_duckdb_file,
        "is a DuckDB file, not a store",
        "as a DuckDB database: IO Error: Corrupt database file",
    ),
    "a truncated catalog": (
        a_truncated_catalog,
        "is a damaged SQLite file (SQLite: database disk image is malformed)",
        "is a SQLite file, not an earlier openbell's DuckDB database",
    ),
    "a catalog with damaged pages": (
        a_catalog_with_damaged_pages,
        "is damaged (SQLite: Page ",
        "is a SQLite file, not an earlier openbell's DuckDB database",
    ),
}

COMMANDS = {
    "query": lambda x: ["query", "select 1", "--db", str(x)],
    "replay": lambda x: ["replay", "--date", SESSION, "--db", str(x)],
    "migrate": lambda x: ["store", "migrate", str(x)],
}


# -- running the CLI --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def market_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the synthetic market made, as a replay's first run would make it."""
    return synthetic_data_folder(tmp_path_factory)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def openbell(*args: str, cwd: Path, data_dir: Path, api_port: int) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, with a private data folder and a Prefect API nobody answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "OPENBELL_"))}
    env.update(
        OPENBELL_DATA__DIR=str(data_dir),
        PREFECT_API_URL=f"http://127.0.0.1:{api_port}/api",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return subprocess.run(
        [sys.executable, "-m", "openbell.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=NO_RETRY_S,
        stdin=subprocess.DEVNULL,
    )


def snapshot(path: Path) -> bytes | list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else path.read_bytes()


# -- the tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_file_ends_in_one_line_naming_it_and_stays_as_it_was(
    case: str, command: str, tmp_path: Path, market_dir: Path, closed_port: int
) -> None:
    make, store_complaint, migrate_complaint = CASES[case]
    bad = make(tmp_path / "given.file")
    before = snapshot(bad)
    neighbours = {p.name for p in tmp_path.iterdir()}

    done = openbell(*COMMANDS[command](bad), cwd=tmp_path, data_dir=market_dir, api_port=closed_port)

    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("openbell: ") and str(bad) in lines[0], lines[0]
    assert (migrate_complaint if command == "migrate" else store_complaint) in lines[0]
    assert "another process" not in lines[0] and "running" not in lines[0]
    assert "replaying" not in done.stdout  # no flow started
    assert snapshot(bad) == before
    # Nothing is made next to it: no store, no data files (SQLite's own -wal/-shm and the write lock of a
    # file that was a catalog aside), and no store in the data folder.
    made = {p.name for p in tmp_path.iterdir()} - neighbours
    assert not {n for n in made if not n.endswith(("-wal", "-shm", ".lock"))}, made
    if "catalog" not in case:
        assert made == set()
    assert not (market_dir / "openbell.ducklake").exists()


def test_an_old_file_that_another_process_writes_is_reported_in_use_at_once(
    tmp_path: Path, market_dir: Path, closed_port: int
) -> None:
    old = legacy_file(tmp_path / "openbell.duckdb")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); sys.stdin.read()",
            str(old),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        done = openbell("store", "migrate", str(old), cwd=tmp_path, data_dir=market_dir, api_port=closed_port)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)

    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"openbell: {old} is open in another process that writes to it (an earlier openbell still running?); "
        "stop it, then move its records"
    )


def test_an_old_file_whose_rows_the_store_refuses_moves_nothing(tmp_path: Path) -> None:
    old = tmp_path / "openbell.duckdb"
    con = duckdb.connect(str(old))
    con.execute("CREATE TABLE trades (trade_date DATE, symbol VARCHAR, shares INTEGER)")
    con.execute("INSERT INTO trades VALUES (NULL, 'AAPL', 10)")  # the store's trades needs a trade_date
    con.close()
    before = old.read_bytes()
    store = Store(tmp_path / "openbell.ducklake")

    with pytest.raises(ConfigError, match=r"cannot copy trades from .*: Constraint Error: .*; nothing was moved"):
        import_legacy(old, store)

    assert store._versions() == set()
    assert old.read_bytes() == before


def test_an_empty_catalog_that_openbell_began_to_make_becomes_the_store(tmp_path: Path) -> None:
    catalog = an_empty_file(tmp_path / "openbell.ducklake")
    lock_file(catalog).touch()  # a first write stopped before the catalog's first page

    store = Store(catalog)
    store.migrate()
    store.insert("runs", [{"run_id": "r1", "flow": "scan"}])

    assert store.query("SELECT run_id FROM runs") == [("r1",)]
