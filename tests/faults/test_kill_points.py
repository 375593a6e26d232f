"""A replayed day killed with SIGKILL at each of its steps, then run again: the records come out as a clean run's.

The day (the synthetic market's last session, on the paper broker) runs in a process of its own, in a
new session, against the test's Prefect API. The test watches the store until the day reaches a step,
kills the whole process group there, and runs the day again in this process. Each step requires:
- the trades equal those of a clean run of the same day;
- no key is stored twice (orders, fills, the paper books, candidates, rankings, sizing, trades, runs);
- nothing of the killed process is left running;
- the earlier day in the store is exactly as it was;
- no run is left `running`: the rerun of a phase marks the killed one `crashed`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from openbell.config import RunOptions
from openbell.store import Store, lake
from openbell.store.migrations import DAY_TABLES
from openbell.venues.synthetic import generate_synthetic_market

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
KEYS = {
    "orders": "client_order_id",
    "fills": "fill_id",
    "paper_orders": "client_order_id",
    "paper_fills": "fill_id",
    "candidates": "trade_date, symbol",
    "rankings": "trade_date, ranker, symbol",
    "sizing": "trade_date, symbol",
    "trades": "trade_date, symbol",
    "daily_pnl": "trade_date",
    "runs": "run_id",
}
DAY_SCRIPT = """
import sys
from datetime import date
from openbell.flows.trading_day import trading_day
from openbell.config import RunOptions
options = RunOptions.model_validate_json(sys.argv[2])
trading_day(trade_date=date.fromisoformat(sys.argv[1]), replace_existing=False, options=options)
"""


def writing(store: Store) -> bool:
    """Whether a writer holds the store's write turn right now (every transaction of the flows takes it)."""
    fd = os.open(lake.lock_file(store.path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def count(sql: str) -> Callable[[Store], bool]:
    return lambda store: store.query(sql)[0][0] > 0


@dataclass(frozen=True)
class Step:
    name: str
    reached: Callable[[Store], bool]


STEPS = [
    Step("the scan began", count("SELECT count(*) FROM runs WHERE flow = 'premarket_scan' AND trade_date = (SELECT max(trade_date) FROM runs)")),
    Step("the candidates are written", count("SELECT count(*) FROM candidates WHERE trade_date = (SELECT max(trade_date) FROM runs)")),
    Step("the ranking is written", count("SELECT count(*) FROM rankings WHERE trade_date = (SELECT max(trade_date) FROM runs)")),
    Step("the sizes are written", count("SELECT count(*) FROM sizing WHERE trade_date = (SELECT max(trade_date) FROM runs)")),
    Step("the first entry is recorded", count("SELECT count(*) FROM orders WHERE trade_date = (SELECT max(trade_date) FROM runs)")),
    Step("in a write after the entries", lambda s: count(
        "SELECT count(*) FROM orders WHERE trade_date = (SELECT max(trade_date) FROM runs)")(s) and writing(s)),
    Step("the monitor began", count("SELECT count(*) FROM runs WHERE flow = 'monitor_exits' AND trade_date = (SELECT max(trade_date) FROM runs)")),
    Step("the protective pairs are placed", count("SELECT count(*) FROM orders WHERE purpose = 'stop' AND trade_date = (SELECT max(trade_date) FROM runs)")),
    Step("a first exit filled", count("SELECT count(*) FROM fills WHERE side = 'sell' AND trade_date = (SELECT max(trade_date) FROM runs)")),
    Step("the liquidation began", count("SELECT count(*) FROM runs WHERE flow = 'liquidate_eod' AND trade_date = (SELECT max(trade_date) FROM runs)")),
    Step("the trades are booked", count("SELECT count(*) FROM trades WHERE trade_date = (SELECT max(trade_date) FROM runs)")),
    Step("the report began", count("SELECT count(*) FROM runs WHERE flow = 'report_eod' AND trade_date = (SELECT max(trade_date) FROM runs)")),
]  # fmt: skip


@dataclass(frozen=True)
class Market:
    minute: Path
    daily: Path
    earlier: date  # a day already in the store when the killed day runs
    day: date  # the day killed and run again
    template: Path  # a store folder holding only the earlier day
    clean: list[tuple]  # the day's trades, run once without a fault

    def options(self, folder: Path) -> RunOptions:
        return RunOptions(
            db_path=str(folder / "openbell.ducklake"), minute_bars=str(self.minute), daily_bars=str(self.daily)
        )


def trades(store: Store, day: date) -> list[tuple]:
    return store.query(
        "SELECT symbol, shares, entry_ts, entry_price, exit_ts, exit_price, exit_reason, commission, pnl FROM trades "
        "WHERE trade_date = ? ORDER BY symbol",
        [day],
    )


def day_rows(store: Store, day: date) -> dict[str, list[tuple]]:
    return {t: store.query(f"SELECT * FROM {t} WHERE trade_date = ? ORDER BY ALL", [day]) for t in DAY_TABLES}


@pytest.fixture(scope="module")
def market(prefect_harness, tmp_path_factory) -> Market:
    from openbell.flows.trading_day import trading_day
    from openbell.venues.replay import ParquetReplaySource

    folder = tmp_path_factory.mktemp("market")
    generate_synthetic_market(folder)
    minute, daily = folder / "minute_bars.parquet", folder / "daily_bars.parquet"
    *_, earlier, day = ParquetReplaySource(minute, daily).sessions()
    template = tmp_path_factory.mktemp("template")
    options = RunOptions(db_path=str(template / "openbell.ducklake"), minute_bars=str(minute), daily_bars=str(daily))
    trading_day(trade_date=earlier, options=options)
    clean = tmp_path_factory.mktemp("clean")
    shutil.copytree(template, clean, dirs_exist_ok=True)
    trading_day(trade_date=day, replace_existing=False, options=options.model_copy(
        update={"db_path": str(clean / "openbell.ducklake")}))  # fmt: skip
    found = trades(Store(clean / "openbell.ducklake"), day)
    assert found, "the clean day traded nothing: no fault could show"
    return Market(minute, daily, earlier, day, template, found)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("step", STEPS, ids=[s.name.replace(" ", "-") for s in STEPS])
def test_a_day_killed_at_a_step_then_run_again_equals_a_clean_run(market, step, tmp_path):
    from prefect.settings import PREFECT_API_URL

    from openbell.flows.trading_day import trading_day

    folder = tmp_path / "data"
    shutil.copytree(market.template, folder)
    options = market.options(folder)
    store = Store(options.db_path)
    earlier = day_rows(store, market.earlier)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "OPENBELL_DATA__DIR": str(folder)}
    argv = [sys.executable, "-c", DAY_SCRIPT, market.day.isoformat(), options.model_dump_json()]
    day = subprocess.Popen(argv, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not step.reached(store):
            assert day.poll() is None, f"the day ended (code {day.returncode}) before {step.name}"
            assert time.monotonic() < deadline, f"the day did not reach {step.name}"
            time.sleep(0.02)
        os.killpg(day.pid, signal.SIGKILL)
        assert day.wait(timeout=30) == -signal.SIGKILL
    finally:
        if day.poll() is None:
            os.killpg(day.pid, signal.SIGKILL)
            day.wait()
    with pytest.raises(ProcessLookupError):
        os.killpg(day.pid, 0)  # nothing of the killed day is left running
    killed_runs = {r for (r,) in store.query("SELECT run_id FROM runs WHERE status = 'running'")}

    trading_day(trade_date=market.day, replace_existing=False, options=options)

    assert trades(store, market.day) == market.clean
    for table, key in KEYS.items():
        ((rows, keys),) = store.query(f"SELECT count(*), count(DISTINCT ({key})) FROM {table}")
        assert rows == keys, f"{table} holds a key twice"
    assert day_rows(store, market.earlier) == earlier
    assert store.query("SELECT count(*) FROM runs WHERE status = 'running'") == [(0,)]
    for run in killed_runs:
        ((status,),) = store.query("SELECT status FROM runs WHERE run_id = ?", [run])
        assert status == "crashed"
