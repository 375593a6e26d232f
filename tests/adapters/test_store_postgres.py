"""The same store on a shared PostgreSQL catalog with its files in a shared folder: DuckLake across machines."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from openbell.store import Lake, Store, connect
from openbell.store.lake import open_reader
from tests.fakes.postgres_server import postgres


@pytest.fixture(scope="module")
def catalog() -> str:
    try:
        with postgres() as dsn:
            yield f"postgres:{dsn}"
    except RuntimeError as exc:
        pytest.skip(f"no PostgreSQL server for the shared-catalog tests: {exc}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The folder every machine would mount (a catalog keeps the data path it was made with)."""
    return tmp_path_factory.mktemp("shared-folder")


@pytest.fixture
def shared(catalog: str, folder: Path) -> Lake:
    """The lake on the module's server; each test starts with no runs and no candidates in it."""
    lake = Lake.shared(catalog, str(folder))
    store = Store(lake)
    store.migrate()
    for table in ("runs", "candidates"):
        store.execute(f"DELETE FROM {table}")
    return lake


WRITER = """
import sys
from openbell.store import Lake, Store
store = Store(Lake.shared(sys.argv[1], sys.argv[2]))
for i in range(int(sys.argv[4])):
    store.upsert("runs", [{"run_id": f"{sys.argv[3]}-{i}", "flow": sys.argv[3]}])
print("ok", flush=True)
"""


def test_records_round_trip_through_a_postgres_catalog(shared: Lake) -> None:
    store = Store(shared)
    store.upsert("candidates", [{"trade_date": date(2024, 3, 5), "symbol": s, "gap_pct": 3.5} for s in ("AAPL", "MSFT")])
    store.upsert("candidates", [{"trade_date": date(2024, 3, 5), "symbol": "AAPL", "passed": True}])

    assert store.query("SELECT symbol, gap_pct, passed FROM candidates ORDER BY symbol") == [
        ("AAPL", 3.5, True),
        ("MSFT", 3.5, None),
    ]


@pytest.mark.timeout(120)
def test_writers_in_other_processes_and_a_reader_share_the_catalog(shared: Lake) -> None:
    store = Store(shared)
    reader = open_reader(shared)
    reader.execute("USE store")
    reader.execute("BEGIN TRANSACTION")
    seen_first = reader.execute("SELECT count(*) FROM runs").fetchone()[0]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, shared.catalog, shared.data_path, name, "10"], stdout=subprocess.PIPE, text=True
        )
        for name in ("a", "b")
    ]
    outputs = [w.communicate(timeout=100)[0].strip() for w in writers]

    seen_during = reader.execute("SELECT count(*) FROM runs").fetchone()[0]
    reader.execute("COMMIT")
    seen_after = reader.execute("SELECT count(*) FROM runs").fetchone()[0]
    reader.close()
    assert outputs == ["ok", "ok"]
    assert (seen_first, seen_during, seen_after) == (0, 0, 20)
    assert store.query("SELECT flow, count(*) FROM runs GROUP BY flow ORDER BY flow") == [("a", 10), ("b", 10)]


def test_housekeeping_writes_the_files_to_the_shared_folder(shared: Lake) -> None:
    store = Store(shared)
    for i in range(5):
        store.upsert("runs", [{"run_id": f"r{i}", "flow": "x"}])

    done = store.housekeep(flush=True)

    assert done.files >= 1
    assert list(Path(shared.data_path).rglob("*.parquet"))
    assert store.query("SELECT count(*) FROM runs") == [(5,)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_trading_day_runs_on_the_shared_catalog(prefect_harness, data_dir, shared: Lake, monkeypatch) -> None:
    from openbell.flows.trading_day import trading_day

    monkeypatch.setenv("OPENBELL_DATA__CATALOG", shared.catalog)
    monkeypatch.setenv("OPENBELL_DATA__DATA_PATH", shared.data_path)

    report = trading_day()

    con = connect()  # the settings name the shared catalog
    ((day, trades),) = con.execute("SELECT max(trade_date), count(*) FROM trades").fetchall()
    con.close()
    assert trades >= 1
    assert f"openbell report for {day}" in report
