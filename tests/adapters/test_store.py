"""Store tests against real DuckLake stores, with reader and writer processes alongside."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
import pytest

from openbell.errors import ConfigError, StoreLockedError
from openbell.store import DAY_TABLES, Store
from openbell.store.migrations import MIGRATIONS

NY = ZoneInfo("America/New_York")
DAY = date(2024, 3, 5)
OTHER_DAY = date(2024, 3, 6)

ALL_TABLES = {
    "schema_migrations",
    "runs",
    "candidates",
    "data_quality",
    "rankings",
    "ranking_decisions",
    "ranker_scores",
    "ranking_quality",
    "llm_calls",
    "news_headlines",
    "sizing",
    "orders",
    "fills",
    "trades",
    "daily_pnl",
    "paper_orders",
    "paper_fills",
    "paper_holdings",
    "paper_clock",
    "backtest_runs",
    "backtest_trades",
    "backtest_daily",
    "backtest_metrics",
    "risk_events",
    "paper_trailing_stops",
    "ranker_states",
}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "db" / "openbell.ducklake")
    store.migrate()
    return store


def candidate(symbol: str, trade_date: date = DAY, **extra) -> dict:
    return {"trade_date": trade_date, "symbol": symbol, "passed": True, **extra}


def table_names(store: Store) -> set[str]:
    return {t for (t,) in store.query("SELECT table_name FROM information_schema.tables WHERE table_catalog = 'store'")}


# -- migrations -----------------------------------------------------------------------------------


def test_migrate_creates_every_table_in_a_new_folder(tmp_path: Path) -> None:
    store = Store(tmp_path / "not" / "yet" / "there.ducklake")

    applied = store.migrate()

    assert applied == [m.name for m in MIGRATIONS]
    assert table_names(store) == ALL_TABLES


def test_migrate_again_applies_nothing(store: Store) -> None:
    assert store.migrate() == []
    assert store.migrate() == []
    assert store.query("SELECT version, name FROM schema_migrations ORDER BY version") == [
        (m.version, m.name) for m in MIGRATIONS
    ]


def test_day_tables_are_the_tables_with_a_trade_date_except_the_audit_logs(store: Store) -> None:
    with_date = {
        t
        for (t,) in store.query(
            "SELECT table_name FROM information_schema.columns WHERE table_catalog = 'store' AND column_name = 'trade_date'"
        )
    }

    # runs, LLM calls and headlines outlive a re-run: they are what the re-run is audited and replayed from;
    # research results live under their own run ids, apart from the days
    research = {"backtest_trades", "backtest_daily"}
    assert set(DAY_TABLES) == with_date - {"runs", "llm_calls", "news_headlines"} - research


def test_an_all_or_nothing_batch_that_fails_leaves_nothing(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown column"):
        with store.batch(all_or_nothing=True):
            store.insert("backtest_runs", [{"run_id": "r1", "kind": "backtest"}])
            store.insert("backtest_metrics", [{"run_id": "r1", "metric": "sharpe", "value": 1.0}])
            store.insert("backtest_daily", [{"run_id": "r1", "no_such_column": 1}])

    assert store.query("SELECT count(*) FROM backtest_runs") == [(0,)]
    assert store.query("SELECT count(*) FROM backtest_metrics") == [(0,)]


def test_a_plain_batch_that_fails_keeps_what_it_wrote(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown column"):
        with store.batch():
            store.insert("backtest_runs", [{"run_id": "r1", "kind": "backtest"}])
            store.insert("backtest_daily", [{"run_id": "r1", "no_such_column": 1}])

    assert store.query("SELECT count(*) FROM backtest_runs") == [(1,)]


def test_trades_reject_an_unknown_exit_reason(store: Store) -> None:
    with pytest.raises(Exception, match="CHECK"):
        store.insert("trades", [{"trade_date": DAY, "symbol": "AAPL", "exit_reason": "panic"}])


# -- round trips ----------------------------------------------------------------------------------


def test_insert_round_trips_decimals_exactly(store: Store) -> None:
    prices = [Decimal("12345678901234.1234"), Decimal("0.0001"), Decimal("187.5"), None]
    rows = [{"fill_id": f"f{i}", "client_order_id": "c1", "trade_date": DAY, "price": p} for i, p in enumerate(prices)]

    inserted = store.insert("fills", rows)

    assert inserted == 4
    assert [p for (p,) in store.query("SELECT price FROM fills ORDER BY fill_id")] == [
        Decimal("12345678901234.1234"),
        Decimal("0.0001"),
        Decimal("187.5000"),
        None,
    ]


def test_timestamps_come_back_tz_aware_in_new_york(store: Store) -> None:
    at_open_utc = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)
    store.insert(
        "fills",
        [
            {"fill_id": "aware", "client_order_id": "c1", "trade_date": DAY, "ts": at_open_utc},
            # A naive value is New York wall-clock time: the store's session time zone.
            {"fill_id": "naive", "client_order_id": "c1", "trade_date": DAY, "ts": datetime(2024, 3, 5, 9, 30)},
        ],
    )

    rows = store.query("SELECT ts FROM fills ORDER BY fill_id")

    for (ts,) in rows:
        assert ts == at_open_utc
        assert ts.utcoffset() == NY.utcoffset(datetime(2024, 3, 5, 9, 30))
        assert (ts.hour, ts.minute) == (9, 30)
    frame = store.query_df("SELECT ts FROM fills")
    assert str(frame["ts"].dt.tz) == "America/New_York"


def test_insert_accepts_a_dataframe_and_a_subset_of_columns(store: Store) -> None:
    frame = pd.DataFrame({"trade_date": [DAY, DAY], "symbol": ["AAPL", "MSFT"], "gap_pct": [0.031, 0.045]})

    assert store.insert("candidates", frame) == 2
    assert store.query("SELECT symbol, gap_pct, passed FROM candidates ORDER BY symbol") == [
        ("AAPL", 0.031, None),
        ("MSFT", 0.045, None),
    ]


def test_insert_stores_a_dict_as_json(store: Store) -> None:
    store.insert("runs", [{"run_id": "r1", "flow": "scan", "parameters": {"top_n": 5}}])

    assert store.query("SELECT parameters->>'top_n' FROM runs") == [("5",)]


def test_insert_of_nothing_writes_nothing(store: Store) -> None:
    assert store.insert("candidates", []) == 0


# -- replace, upsert, delete_day ------------------------------------------------------------------


def test_replace_swaps_only_the_matching_rows(store: Store) -> None:
    store.insert("candidates", [candidate("AAPL"), candidate("MSFT"), candidate("AAPL", OTHER_DAY)])

    deleted = store.replace("candidates", [candidate("NVDA")], where={"trade_date": DAY})

    assert deleted == 2
    assert store.query("SELECT trade_date, symbol FROM candidates ORDER BY trade_date") == [
        (DAY, "NVDA"),
        (OTHER_DAY, "AAPL"),
    ]


def test_replace_can_put_back_the_same_keys(store: Store) -> None:
    store.insert("candidates", [candidate("AAPL", gap_pct=0.01)])

    store.replace("candidates", [candidate("AAPL", gap_pct=0.02)], where={"trade_date": DAY})

    assert store.query("SELECT symbol, gap_pct FROM candidates") == [("AAPL", 0.02)]


def test_replace_keeps_the_old_rows_when_the_insert_fails(store: Store) -> None:
    store.insert("candidates", [candidate("AAPL"), candidate("MSFT")])
    duplicate_keys = [candidate("NVDA"), candidate("NVDA")]

    with pytest.raises(Exception, match="(?i)duplicate|constraint"):
        store.replace("candidates", duplicate_keys, where={"trade_date": DAY})

    assert store.query("SELECT symbol FROM candidates ORDER BY symbol") == [("AAPL",), ("MSFT",)]


def test_replace_refuses_an_empty_where(store: Store) -> None:
    with pytest.raises(ValueError, match="where"):
        store.replace("candidates", [candidate("AAPL")], where={})


def test_upsert_replaces_rows_on_the_primary_key(store: Store) -> None:
    store.insert("paper_holdings", [{"symbol": "SPY", "qty": 10, "avg_price": Decimal("500.1")}])

    written = store.upsert(
        "paper_holdings",
        [
            {"symbol": "SPY", "qty": 15, "avg_price": Decimal("501.25")},
            {"symbol": "QQQ", "qty": 3, "avg_price": Decimal("430")},
        ],
    )

    assert written == 2
    assert store.query("SELECT symbol, qty, avg_price FROM paper_holdings ORDER BY symbol") == [
        ("QQQ", 3, Decimal("430.0000")),
        ("SPY", 15, Decimal("501.2500")),
    ]


def test_upsert_keeps_the_last_row_for_a_repeated_key(store: Store) -> None:
    store.upsert("paper_clock", [{"trade_date": DAY, "synced_until": datetime(2024, 3, 5, 10, 0, tzinfo=NY)}])

    store.upsert(
        "paper_clock",
        [
            {"trade_date": DAY, "synced_until": datetime(2024, 3, 5, 11, 0, tzinfo=NY)},
            {"trade_date": DAY, "synced_until": datetime(2024, 3, 5, 12, 0, tzinfo=NY)},
        ],
    )

    assert store.query("SELECT synced_until FROM paper_clock") == [(datetime(2024, 3, 5, 12, 0, tzinfo=NY),)]


def test_delete_day_removes_only_that_day_and_counts_per_table(store: Store) -> None:
    store.insert("candidates", [candidate("AAPL"), candidate("MSFT"), candidate("AAPL", OTHER_DAY)])
    store.insert("orders", [{"client_order_id": "o1", "trade_date": DAY, "symbol": "AAPL"}])
    store.insert("runs", [{"run_id": "r1", "flow": "scan", "trade_date": DAY}])

    counts = store.delete_day(DAY)

    assert counts == {"candidates": 2, "orders": 1}
    assert store.query("SELECT trade_date FROM candidates") == [(OTHER_DAY,)]
    assert store.query("SELECT count(*) FROM runs") == [(1,)]


def test_transaction_rolls_back_when_the_block_raises(store: Store) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction() as con:
            con.execute("INSERT INTO runs (run_id, flow) VALUES ('r1', 'scan')")
            raise RuntimeError("boom")

    assert store.query("SELECT count(*) FROM runs") == [(0,)]


# -- validation -----------------------------------------------------------------------------------


def test_unknown_table_is_refused_by_name(store: Store) -> None:
    with pytest.raises(ValueError, match="'candidatez'"):
        store.insert("candidatez", [candidate("AAPL")])


def test_unknown_column_is_refused_by_name(store: Store) -> None:
    with pytest.raises(ValueError, match="'gap; DROP TABLE runs'"):
        store.insert("candidates", [candidate("AAPL", **{"gap; DROP TABLE runs": 1})])
    with pytest.raises(ValueError, match="'day'"):
        store.replace("candidates", [], where={"day": DAY})
    with pytest.raises(ValueError, match="'sharez'"):
        store.upsert("paper_holdings", [{"symbol": "SPY", "sharez": 1}])


def test_read_only_connect_on_a_missing_store_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ducklake"

    with pytest.raises(ConfigError, match="missing.ducklake"):
        with Store(missing).connect(read_only=True):
            pass
    assert not missing.exists()


def test_a_store_moved_with_its_folder_still_opens_with_every_row(tmp_path: Path) -> None:
    before = Store(tmp_path / "old" / "openbell.ducklake")
    before.migrate()
    before.insert("candidates", [candidate(f"S{i}") for i in range(3)])
    before.housekeep(flush=True)  # the rows now live in Parquet files under the folder
    assert list((tmp_path / "old" / "openbell.ducklake.files").rglob("*.parquet"))

    (tmp_path / "old").rename(tmp_path / "new")
    after = Store(tmp_path / "new" / "openbell.ducklake")

    assert after.query("SELECT symbol FROM candidates ORDER BY symbol") == [("S0",), ("S1",), ("S2",)]
    after.insert("candidates", [candidate("S3")])
    assert after.query("SELECT count(*) FROM candidates") == [(4,)]


def test_memory_store_keeps_its_data_between_calls() -> None:
    store = Store(":memory:")
    store.migrate()

    store.insert("candidates", [candidate("AAPL")])

    assert store.query("SELECT symbol FROM candidates") == [("AAPL",)]


# -- other processes: readers that hold on, writers that take turns --------------------------------

READER = """
import sys, time
import openbell.store
con = openbell.store.connect(sys.argv[1])
con.execute("BEGIN TRANSACTION")
print(con.execute("SELECT count(*) FROM runs").fetchone()[0], flush=True)
sys.stdin.readline()  # holds its transaction until told
print(con.execute("SELECT count(*) FROM runs").fetchone()[0], flush=True)
con.execute("COMMIT")
print(con.execute("SELECT count(*) FROM runs").fetchone()[0], flush=True)
"""

TURN_HOLDER = """
import sys, time
from openbell.store import Store
store = Store(sys.argv[1])
with store.transaction() as con:
    con.execute("INSERT INTO runs (run_id, flow) VALUES ('held', 'holder')")
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]))
"""

WRITER = """
import sys
from openbell.store import Store
store = Store(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.upsert("runs", [{"run_id": f"{sys.argv[2]}-{i}", "flow": sys.argv[2]}])
"""


def start(script: str, *args: object, stdin: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(60)
def test_a_reader_holding_a_transaction_never_blocks_a_writer_and_keeps_its_snapshot(store: Store) -> None:
    store.insert("runs", [{"run_id": "before", "flow": "scan"}])
    reader = start(READER, store.path, stdin=True)
    try:
        assert reader.stdout.readline().strip() == "1"  # it holds a transaction from here
        timings = []
        for i in range(10):
            started = time.monotonic()
            store.upsert("runs", [{"run_id": f"w{i}", "flow": "write"}])
            timings.append(time.monotonic() - started)
        store.housekeep()  # the close's housekeeping, too

        reader.stdin.write("go\n")
        reader.stdin.flush()
        during, after = reader.stdout.readline().strip(), reader.stdout.readline().strip()
    finally:
        reader.kill()
        reader.wait()
    assert max(timings) < 2.0  # no write waited on the reader (each takes tens of milliseconds)
    assert during == "1"  # its snapshot did not move under it
    assert after == "11"  # and a new transaction sees every commit


@pytest.mark.timeout(60)
def test_writers_in_two_processes_take_turns_and_lose_nothing(store: Store) -> None:
    writers = [start(WRITER, store.path, name, 15) for name in ("a", "b")]
    store.upsert("runs", [{"run_id": "main", "flow": "main"}])
    for writer in writers:
        assert writer.wait(timeout=50) == 0

    assert store.query("SELECT flow, count(*) FROM runs GROUP BY flow ORDER BY flow") == [("a", 15), ("b", 15), ("main", 1)]


@pytest.mark.timeout(30)
def test_a_write_waits_its_turn_then_proceeds(store: Store) -> None:
    holder = start(TURN_HOLDER, store.path, 1.5)
    try:
        assert holder.stdout.readline().strip() == "ready"
        started = time.monotonic()

        store.insert("runs", [{"run_id": "mine", "flow": "after"}])

        waited = time.monotonic() - started
        assert holder.wait(timeout=10) == 0
    finally:
        holder.kill()
        holder.wait()
    assert waited > 0.5  # it really waited for the other writer
    assert store.query("SELECT run_id FROM runs ORDER BY run_id") == [("held",), ("mine",)]


@pytest.mark.timeout(30)
def test_a_write_turn_held_past_the_timeout_raises_store_locked_naming_the_store(store: Store) -> None:
    holder = start(TURN_HOLDER, store.path, 3)
    try:
        assert holder.stdout.readline().strip() == "ready"
        impatient = Store(store.path, lock_timeout=0.3)
        started = time.monotonic()

        with pytest.raises(StoreLockedError) as raised:
            impatient.insert("runs", [{"run_id": "late", "flow": "x"}])

        waited = time.monotonic() - started
        read_while_held = impatient.query("SELECT count(*) FROM runs")  # reads never wait
    finally:
        holder.kill()
        holder.wait()
    message = str(raised.value)
    assert str(store.path) in message
    assert "OPENBELL_DATA__LOCK_TIMEOUT_S" in message
    assert 0.25 < waited < 2.0
    assert read_while_held == [(0,)]  # the holder's row is not committed
    assert store.query("SELECT run_id FROM runs") == []  # killed mid-transaction: nothing half-written


def test_a_duckdb_file_of_an_earlier_openbell_is_refused_with_the_command_that_moves_it(tmp_path: Path) -> None:
    old = tmp_path / "openbell.duckdb"
    duckdb.connect(str(old)).close()
    before = old.read_bytes()

    with pytest.raises(ConfigError, match="openbell store migrate"):
        Store(old).migrate()
    assert old.read_bytes() == before


def test_another_programs_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "prefect.db"
    with contextlib.closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE flow_run (id TEXT)")
    before = other.read_bytes()

    with pytest.raises(ConfigError, match="not an openbell store"):
        Store(other).migrate()
    assert other.read_bytes() == before


# -- batches ----------------------------------------------------------------------------------------


def test_a_batch_commits_its_writes_once_at_the_end(store: Store) -> None:
    with store.batch():
        store.insert("runs", [{"run_id": "r1", "flow": "scan"}])
        store.insert("runs", [{"run_id": "r2", "flow": "rank"}])

    assert store.query("SELECT run_id FROM runs ORDER BY run_id") == [("r1",), ("r2",)]


def test_a_failing_flush_reaches_the_caller_and_leaves_the_store_usable(store: Store) -> None:
    def flush() -> None:
        store.insert("runs", [{"run_id": "dup", "flow": "again"}])  # violates the primary key

    with pytest.raises(Exception, match="(?i)constraint|duplicate"):
        with store.batch():
            store.insert("runs", [{"run_id": "dup", "flow": "first"}])
            store.before_commit(flush)

    store.insert("runs", [{"run_id": "after", "flow": "next"}])
    assert ("after",) in store.query("SELECT run_id FROM runs")


def test_an_error_inside_a_batch_is_the_one_the_caller_sees(store: Store) -> None:
    with pytest.raises(RuntimeError, match="the block failed"):
        with store.batch():
            store.insert("runs", [{"run_id": "r1", "flow": "scan"}])
            with contextlib.suppress(duckdb.Error):  # DuckDB aborts the transaction: the commit will fail
                store.execute("INSERT INTO runs (run_id) VALUES ('r2')")  # flow is NOT NULL
            raise RuntimeError("the block failed")

    assert store.query("SELECT count(*) FROM runs") == [(0,)]  # rolled back, and the store still answers


def test_housekeeping_merges_small_files_only_above_the_threshold_and_keeps_every_row(tmp_path: Path) -> None:
    store = Store(tmp_path / "openbell.ducklake")
    store.migrate()
    for day in range(1, 6):
        store.insert("candidates", [candidate(f"S{i}", date(2024, 3, day)) for i in range(4)])
        store.housekeep(merge_above_files=100, flush=True)  # a day's writes become a file; too few to merge
    files = store.housekeep(merge_above_files=100, flush=True).files
    assert files >= 5

    done = store.housekeep(merge_above_files=files - 1, flush=True)

    assert done.merged and done.files < files
    assert store.query("SELECT count(*), count(DISTINCT (trade_date, symbol)) FROM candidates") == [(20, 20)]
    assert "small files merged" in str(done)
