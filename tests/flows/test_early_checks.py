"""Mistakes caught before the first flow writes, and a failure inside a flow told in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from openbell.config import RunOptions
from openbell.store import Store

DAY = date(2018, 3, 1)
HOLD_THE_WRITE_TURN = """
import sys, time
from openbell.store import Lake
from openbell.store.lake import write_turn
with write_turn(Lake.at(sys.argv[1]), 10):
    print("holding", flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ({"OPENBELL_TRADING_MODE": "live"}, "OPENBELL_LIVE_CONFIRMATION"),
        ({"OPENBELL_BROKER__KIND": "alpaca"}, "the Alpaca broker needs API keys"),
        ({"OPENBELL_BROKER__KIND": "ibkr", "OPENBELL_BROKER__IBKR__PORT": "7496"}, "trades a live account"),
    ],
)
def test_a_setting_that_cannot_trade_stops_the_replay_before_anything_starts(tmp_path, variables, says):
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OPENBELL_")}
    env |= {"OPENBELL_DATA__DIR": str(tmp_path / "data"), "PREFECT_API_URL": "http://127.0.0.1:9/api", **variables}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "openbell.cli", "replay", "--date", "2025-03-04"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [next(line for line in done.stderr.splitlines() if says in line)]
    assert not (tmp_path / "data").exists()  # no store, no synthetic market, no Prefect server: nothing
    assert time.monotonic() - started < 60


DAY_SCRIPT = """
import sys
from datetime import date
from openbell.flows.trading_day import trading_day
from openbell.config import RunOptions
trading_day(trade_date=date(2018, 3, 1), symbols=["NVAX"], options=RunOptions.model_validate_json(sys.argv[1]))
"""


@pytest.mark.slow
@pytest.mark.shared_data
def test_a_failure_inside_a_flow_is_one_line_on_the_console(prefect_harness, shared_data, tmp_path):
    from prefect.settings import PREFECT_API_URL

    from openbell.flows.trading_day import trading_day

    minute, daily = shared_data
    options = RunOptions(db_path=str(tmp_path / "openbell.ducklake"), minute_bars=str(minute), daily_bars=str(daily))
    trading_day(trade_date=DAY, symbols=["NVAX"], options=options)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_WRITE_TURN, options.db_path], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"holding\n"
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "OPENBELL_DATA__LOCK_TIMEOUT_S": "1"}
        # The day again, as a process of its own with Prefect's console logging: the swap finds the store busy.
        done = subprocess.run([sys.executable, "-c", DAY_SCRIPT, options.model_dump_json()], env=env,
                              capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    console = done.stderr + done.stdout

    assert done.returncode == 1  # the script's own traceback is Python's, after the flow ended: not a log line
    assert console.count("Traceback (most recent call last)") == 1  # the script's own, none in the log lines
    logged = console.split("Traceback (most recent call last)")[0]  # what the flows logged before the script died
    assert "StoreLockedError" in logged
    assert [line for line in logged.splitlines() if "StoreLockedError" in line or "stayed busy" in line] == [
        next(line for line in logged.splitlines() if "Task run failed with exception: StoreLockedError" in line)
    ]
    assert Store(Path(options.db_path)).query("SELECT count(*) FROM trades") == [(1,)]  # the first replay, whole
