"""The store while a day trades: readers held open all day, `openbell query` in a loop, and a kill -9 mid-write."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from openbell.store import Store, lake

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
KEYED = {  # every table the day writes, and its key
    "orders": "client_order_id",
    "fills": "fill_id",
    "paper_orders": "client_order_id",
    "paper_fills": "fill_id",
    "trades": "trade_date, symbol",
    "sizing": "trade_date, symbol",
    "candidates": "trade_date, symbol",
    "rankings": "trade_date, ranker, symbol",
    "daily_pnl": "trade_date",
    "runs": "run_id",
}


def trades(store: Store) -> list[tuple]:
    return store.query(
        "SELECT trade_date, symbol, shares, entry_price, exit_price, exit_reason, pnl FROM trades ORDER BY ALL"
    )


@pytest.fixture(scope="module")
def undisturbed(prefect_harness, tmp_path_factory) -> list[tuple]:
    """The synthetic market's last day, traded with nothing else touching the store."""
    from openbell.config import RunOptions
    from openbell.flows.trading_day import trading_day

    db = tmp_path_factory.mktemp("alone") / "openbell.ducklake"
    trading_day(options=RunOptions(db_path=str(db)))
    return trades(Store(db))


def new_store(path: Path) -> Store:
    store = Store(path)
    store.migrate()
    return store


READER = """
import sys
import openbell.store
con = openbell.store.connect(sys.argv[1])
con.execute("BEGIN TRANSACTION")
count = "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM trades)"
print(con.execute(count).fetchone()[0], flush=True)
sys.stdin.readline()  # the day runs meanwhile
print(con.execute(count).fetchone()[0], flush=True)
con.execute("COMMIT")
print(con.execute("SELECT count(*) FROM trades").fetchone()[0], flush=True)
"""


@pytest.mark.timeout(300)
def test_a_reader_holding_a_transaction_all_day_neither_waits_nor_is_waited_for(undisturbed, data_dir):
    from openbell.flows.trading_day import trading_day

    store = new_store(data_dir / "openbell.ducklake")
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(store.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == "0"  # its transaction is open from here on
        busy_before = lake.waits.found_busy

        trading_day()

        busy = lake.waits.found_busy - busy_before
        reader.stdin.write("done\n")
        reader.stdin.flush()
        during, after = reader.stdout.readline().strip(), reader.stdout.readline().strip()
        assert reader.wait(timeout=30) == 0
    finally:
        reader.kill()
        reader.wait()
    assert trades(store) == undisturbed
    assert busy == 0  # no write of the day found the store busy
    assert during == "0"  # the reader's snapshot stayed where it began, through the close's housekeeping
    assert after == str(len(undisturbed))  # and its next transaction sees the whole day


@pytest.mark.timeout(300)
def test_openbell_query_in_a_loop_during_a_day_never_fails(undisturbed, data_dir):
    from openbell.flows.trading_day import trading_day

    store = new_store(data_dir / "openbell.ducklake")
    command = [str(Path(sys.executable).with_name("openbell")), "query", "--db", str(store.path), "--format", "csv"]
    sql = "SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM fills) AS fills"
    answers: list[subprocess.CompletedProcess] = []
    day_over = threading.Event()

    def ask() -> None:
        while not day_over.is_set() or not answers:
            answers.append(subprocess.run([*command, sql], capture_output=True, text=True, timeout=60))

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        trading_day()
    finally:
        day_over.set()
        asker.join(timeout=120)

    failures = [a.stderr for a in answers if a.returncode != 0]
    assert failures == []
    assert len(answers) >= 2
    assert trades(store) == undisturbed
    counts = [tuple(map(int, a.stdout.splitlines()[1].split(","))) for a in answers]
    assert counts == sorted(counts)  # each answer a committed state, never going back


DAY = """
from openbell.flows.trading_day import trading_day
trading_day()
"""


def write_in_progress(catalog: Path) -> bool:
    """Whether a writer holds the store's write turn right now (openbell's writers take it for every transaction)."""
    fd = os.open(lake.lock_file(catalog), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the lock if it was taken
    return False


@pytest.mark.timeout(300)
def test_a_day_killed_mid_write_then_run_again_loses_and_duplicates_nothing(undisturbed, data_dir):
    from prefect.settings import PREFECT_API_URL

    from openbell.flows.trading_day import trading_day

    store = new_store(data_dir / "openbell.ducklake")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "OPENBELL_DATA__DIR": str(data_dir)}
    day = subprocess.Popen([sys.executable, "-c", DAY], cwd=PROJECT, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        # Once the day has sent its orders, kill it in the middle of one of its writes.
        while not store.query("SELECT count(*) FROM orders")[0][0] and day.poll() is None:
            assert time.monotonic() < deadline, "the day placed no order"
            time.sleep(0.02)
        while not write_in_progress(store.path) and day.poll() is None:
            assert time.monotonic() < deadline, "the day wrote nothing after its orders"
        day.send_signal(signal.SIGKILL)
        assert day.wait(timeout=30) == -signal.SIGKILL
    finally:
        day.kill()
        day.wait()
    committed = {t: set(store.query(f"SELECT {k} FROM {t}")) for t, k in KEYED.items()}

    trading_day(replace_existing=False)  # the same day again, on top of what the killed one committed

    for table, key in KEYED.items():
        ((rows, keys),) = store.query(f"SELECT count(*), count(DISTINCT ({key})) FROM {table}")
        assert rows == keys, f"{table} has a duplicated key"
        assert committed[table] <= set(store.query(f"SELECT {key} FROM {table}")), f"{table} lost a committed row"
    assert trades(store) == undisturbed
