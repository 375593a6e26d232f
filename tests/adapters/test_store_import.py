"""Moving an earlier openbell's DuckDB file into the store: every row, counted, once; the file untouched."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from openbell import wiring
from openbell.config import Settings
from openbell.errors import ConfigError
from openbell.store import Store
from openbell.store.convert import import_legacy
from openbell.store.migrations import MIGRATIONS

LEGACY_SCHEMA = Path(__file__).with_name("legacy_schema.sql")
TABLES = ("runs", "candidates", "orders", "trades", "llm_calls", "backtest_trades")


def legacy_file(path: Path, *, backtest_rows: int = 50) -> Path:
    """An earlier openbell's database: its schema at version 3 and a few rows of every kind of column."""
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'America/New_York'")
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)")
    con.execute(LEGACY_SCHEMA.read_text())
    con.execute("INSERT INTO schema_migrations VALUES (1, 'a', now()), (2, 'b', now()), (3, 'c', now())")
    con.execute("""
        INSERT INTO runs VALUES ('r1', 'trading_day', '2024-03-05', 'replay', '{"x": 1}',
            '2024-03-05 09:00:00-05', '2024-03-05 16:00:00-05', 'ok', NULL);
        INSERT INTO candidates (trade_date, symbol, prior_close, open_price, gap_pct, passed, run_id, ret_5d_pct)
            SELECT DATE '2024-03-05', 'S' || i, 10.1234 + i, 11.5, 0.04, i % 2 = 0, 'r1', 1.5 FROM range(40) t(i);
        INSERT INTO orders (client_order_id, trade_date, symbol, side, qty, limit_price, status, submitted_at)
            VALUES ('ob-20240305-AAPL-entry', '2024-03-05', 'AAPL', 'buy', 10, 187.1234, 'filled', '2024-03-05 09:28:00-05');
        INSERT INTO trades VALUES ('2024-03-05', 'AAPL', 10, '2024-03-05 09:30:00-05', 187.1234,
            '2024-03-05 10:01:00-05', 191.9876, 'target', 0.0100, 48.6420, 2.6, 'e', 'x');
        INSERT INTO llm_calls (call_id, request_key, prompt_hash, status, messages, parsed)
            VALUES ('c1', 'k', 'h', 'ok', '[{"role": "user"}]', '{"ranking": []}');
    """)
    con.execute(
        "INSERT INTO backtest_trades (run_id, trade_date, symbol, shares, pnl, return_pct) "
        "SELECT 'bt', DATE '2018-03-01' + (i % 15)::INT, 'S' || (i % 500), 100, (i % 97) * 0.0125, i * 1e-4 "
        f"FROM range({backtest_rows}) t(i)"
    )
    con.close()
    return path


def rows(query: str, con) -> list[tuple]:
    return con.execute(query).fetchall()


def exact_but_doubles(found: list[tuple]) -> list[tuple]:
    """Rows to compare: every value exact, but DOUBLEs to 1e-15 (rows kept in the catalog may move one ulp)."""
    return [tuple(pytest.approx(v, rel=1e-15) if isinstance(v, float) else v for v in row) for row in found]


def test_every_row_moves_exactly_and_the_file_stays_as_it_was(tmp_path: Path) -> None:
    old = legacy_file(tmp_path / "openbell.duckdb")
    before = old.read_bytes()
    store = Store(tmp_path / "openbell.ducklake")

    copied = import_legacy(old, store)

    con = duckdb.connect(str(old), read_only=True)
    con.execute("SET TimeZone = 'America/New_York'")
    for table in TABLES:
        order = "ORDER BY ALL"
        expected = exact_but_doubles(rows(f"SELECT * FROM {table} {order}", con))
        assert store.query(f"SELECT * FROM {table} {order}") == expected, table
        assert copied[table] == len(rows(f"SELECT * FROM {table}", con))
    con.close()
    # the store's own schema history
    assert store.query("SELECT max(version) FROM schema_migrations") == [(len(MIGRATIONS),)]
    assert old.read_bytes() == before


def test_a_data_folder_with_the_old_file_is_moved_on_first_use_and_only_once(tmp_path: Path, caplog) -> None:
    legacy_file(tmp_path / "openbell.duckdb")
    settings = Settings(data={"dir": tmp_path})

    store = wiring.store_for(settings)
    store.upsert("runs", [{"run_id": "new", "flow": "after"}])
    again = wiring.store_for(Settings(data={"dir": tmp_path}))

    assert store.path == tmp_path / "openbell.ducklake"
    assert again.query("SELECT count(*) FROM candidates") == [(40,)]
    assert again.query("SELECT count(*) FROM runs") == [(2,)]  # imported once, then written to
    assert any("moved" in r.message and "count" in r.message for r in caplog.records)


def test_a_store_that_has_records_is_not_imported_into(tmp_path: Path) -> None:
    old = legacy_file(tmp_path / "openbell.duckdb")
    store = Store(tmp_path / "openbell.ducklake")
    store.migrate()
    store.insert("runs", [{"run_id": "mine", "flow": "x"}])

    with pytest.raises(ConfigError, match="already has records"):
        import_legacy(old, store)
    assert store.query("SELECT run_id FROM runs") == [("mine",)]


def test_a_file_that_is_not_duckdb_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")

    with pytest.raises(ConfigError, match="not a DuckDB file"):
        import_legacy(notes, Store(tmp_path / "openbell.ducklake"))


IMPORT = """
import sys
from pathlib import Path
from openbell.store import Store
from openbell.store.convert import import_legacy
print("importing", flush=True)
import_legacy(Path(sys.argv[1]), Store(sys.argv[2]))
print("done", flush=True)
"""


ROWS = 6_000_000  # a copy that takes seconds, so the kill lands in it


@pytest.mark.timeout(120)
def test_an_import_killed_midway_leaves_no_records_and_the_next_one_moves_them_all(tmp_path: Path) -> None:
    old = legacy_file(tmp_path / "openbell.duckdb", backtest_rows=ROWS)
    target = tmp_path / "openbell.ducklake"
    importer = subprocess.Popen([sys.executable, "-c", IMPORT, str(old), str(target)], stdout=subprocess.PIPE, text=True)
    assert importer.stdout.readline().strip() == "importing"
    written = Path(f"{target}.files") / "main" / "backtest_trades"
    deadline = time.monotonic() + 60
    while not any(written.glob("*.parquet")) and importer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    importer.send_signal(signal.SIGKILL)  # in the middle of the copy: its first data file is on disk
    importer.wait()
    assert importer.returncode == -signal.SIGKILL

    store = Store(target)
    assert store._versions() == set()  # nothing half-imported: the store holds no schema and no rows

    copied = import_legacy(old, store)

    assert copied["backtest_trades"] == ROWS
    assert store.query("SELECT count(*), sum(pnl) FROM backtest_trades") == [
        (ROWS, duckdb.connect(str(old), read_only=True).execute("SELECT sum(pnl) FROM backtest_trades").fetchone()[0])
    ]
    assert store.query("SELECT count(*) FROM candidates") == [(40,)]


def test_a_duckdb_file_without_openbells_tables_is_refused_and_nothing_is_made(tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE prices (symbol VARCHAR, close DOUBLE)")
    con.close()
    store = Store(tmp_path / "openbell.ducklake")

    with pytest.raises(ConfigError, match="none of openbell's tables"):
        import_legacy(other, store)
    assert store._versions() == set()
