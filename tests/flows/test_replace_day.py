"""A replayed day replaced again: whole or not at all, never seen half done, and never the live book.

Each test replays 2018-03-01 of the recorded data through `trading_day`, then replays it again.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from openbell.config import RunOptions
from openbell.errors import ConfigError, StoreLockedError
from openbell.store import Store
from openbell.store.migrations import DAY_TABLES

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

DAY = date(2018, 3, 1)
RECORDS = ("candidates", "rankings", "sizing", "orders", "fills", "trades", "daily_pnl", "paper_orders", "paper_fills")


@pytest.fixture
def options(shared_data, tmp_path) -> RunOptions:
    minute, daily = shared_data
    return RunOptions(db_path=str(tmp_path / "openbell.ducklake"), minute_bars=str(minute), daily_bars=str(daily))


def day_records(store: Store, day: date = DAY) -> dict[str, list[tuple]]:
    """Every row of the day's record tables, in a stable order (run ids aside: each run has its own)."""
    records = {}
    for table in RECORDS:
        columns = [c for (c,) in store.query(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database() "
            "AND table_schema = 'main' AND table_name = ? AND column_name <> 'run_id' ORDER BY ordinal_position",
            [table],
        )]  # fmt: skip
        listed = ", ".join(columns)
        records[table] = store.query(f"SELECT {listed} FROM {table} WHERE trade_date = ? ORDER BY ALL", [day])
    return records


def staging_left(options: RunOptions) -> list[Path]:
    folder = Path(options.db_path).parent / ".staging"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_a_rerun_that_fails_leaves_the_earlier_replay_whole(prefect_harness, options, monkeypatch):
    from openbell.flows.trading_day import trading_day

    trading_day(trade_date=DAY, options=options)
    store = Store(options.db_path)
    before = day_records(store)
    assert len(before["trades"]) == 5

    # Refused before its first flow: the live switch without its confirmation.
    monkeypatch.setenv("OPENBELL_TRADING_MODE", "live")
    with pytest.raises(ConfigError, match="OPENBELL_LIVE_CONFIRMATION"):
        trading_day(trade_date=DAY, options=options.model_copy(update={"target_pct": Decimal(5)}))
    monkeypatch.delenv("OPENBELL_TRADING_MODE")
    assert day_records(store) == before

    # The whole day replayed, then the swap refused: another process holds the store's write turn.
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_WRITE_TURN, options.db_path], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"holding\n"
        monkeypatch.setenv("OPENBELL_DATA__LOCK_TIMEOUT_S", "2")
        with pytest.raises(StoreLockedError):
            trading_day(trade_date=DAY, options=options.model_copy(update={"target_pct": Decimal(5)}))
    finally:
        holder.kill()
        holder.wait()

    assert day_records(store) == before
    assert staging_left(options) == []


HOLD_THE_WRITE_TURN = """
import sys, time
from openbell.store import Lake
from openbell.store.lake import write_turn
with write_turn(Lake.at(sys.argv[1]), 10):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_readers_see_the_earlier_replay_until_the_new_one_is_complete(prefect_harness, options):
    from openbell.flows.trading_day import trading_day

    trading_day(trade_date=DAY, options=options)
    store = Store(options.db_path)
    old = store.query("SELECT count(*), sum(pnl) FROM trades WHERE trade_date = ?", [DAY])[0]
    seen: list[tuple] = []
    done = threading.Event()

    def read() -> None:
        reader = Store(options.db_path)
        while not done.is_set():
            seen.append(reader.query("SELECT count(*), sum(pnl) FROM trades WHERE trade_date = ?", [DAY])[0])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        trading_day(trade_date=DAY, options=options.model_copy(update={"target_pct": Decimal(5), "stop_pct": Decimal(3)}))
    finally:
        done.set()
        reader.join()
    new = store.query("SELECT count(*), sum(pnl) FROM trades WHERE trade_date = ?", [DAY])[0]

    assert new != old and len(seen) > 20
    assert set(seen) <= {old, new}  # never empty, never half written
    switched = seen.index(new) if new in seen else len(seen)
    assert all(s == old for s in seen[:switched]) and all(s == new for s in seen[switched:])
    assert store.query("SELECT count(*) - count(DISTINCT client_order_id) FROM orders") == [(0,)]
    assert staging_left(options) == []


def test_a_replay_never_touches_the_live_book(prefect_harness, options):
    from openbell.flows.trading_day import trading_day

    store = Store(options.db_path)
    store.migrate()
    live = store.of_book("live")
    live.insert("trades", [{"trade_date": DAY, "symbol": "NVAX", "shares": 300, "entry_price": Decimal("3.31"),
                            "exit_price": Decimal("3.40"), "exit_reason": "target", "pnl": Decimal("25.00")}])  # fmt: skip
    live.insert("daily_pnl", [{"trade_date": DAY, "net_pnl": Decimal("25.00")}])
    live_before = {t: live.query(f"SELECT * FROM {t} ORDER BY ALL") for t in DAY_TABLES}

    trading_day(trade_date=DAY, options=options)  # the first replay of the date
    trading_day(trade_date=DAY, options=options.model_copy(update={"target_pct": Decimal(5)}))  # and its replacement

    assert {t: live.query(f"SELECT * FROM {t} ORDER BY ALL") for t in DAY_TABLES} == live_before
    assert store.query("SELECT count(*) FROM trades WHERE trade_date = ?", [DAY]) == [(5,)]  # the replay book
    assert store.query("SELECT count(*) FROM live.trades") == [(1,)]
