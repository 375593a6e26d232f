"""Exits beyond a fixed target and stop on a replayed day (2018-03-01), each equal to the backtest of the same day.

The flows trade them on the paper broker (a trailing stop at the broker, the time exit by the monitor,
the break-even by the monitor replacing the broker's pair, levels in ATR multiples from the scan); a
backtest with the same settings must write the same trades.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from openbell.config import RunOptions
from openbell.research import jobs
from openbell.research.backtest import BacktestSpec
from openbell.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

DAY = date(2018, 3, 1)
COLUMNS = "symbol, shares, entry_ts, entry_price, exit_ts, exit_price, exit_reason, commission, pnl"


@pytest.fixture
def options(shared_data, tmp_path) -> RunOptions:
    minute, daily = shared_data
    return RunOptions(db_path=str(tmp_path / "openbell.ducklake"), minute_bars=str(minute), daily_bars=str(daily))


def _replay_and_backtest(options: RunOptions) -> tuple[list[tuple], list[tuple]]:
    from openbell.flows.trading_day import trading_day

    trading_day(trade_date=DAY, options=options)
    store = Store(options.db_path)
    finished = jobs.backtest(BacktestSpec(options.settings(), DAY, DAY), report_to=Path(options.db_path).parent / "b.html")
    replayed = store.query(f"SELECT {COLUMNS} FROM trades WHERE trade_date = ? ORDER BY symbol", [DAY])
    backtested = store.query(
        f"SELECT {COLUMNS} FROM backtest_trades WHERE run_id = ? ORDER BY symbol", [finished.result.run_id]
    )
    return replayed, backtested


def test_the_time_exit_sells_at_the_open_n_minutes_after_the_entry_as_the_backtest_does(
    prefect_harness, options, monkeypatch
):
    monkeypatch.setenv("OPENBELL_EXITS__TIME_EXIT_MIN", "20")
    options = options.model_copy(update={"stop_pct": Decimal(5), "target_pct": Decimal(10)})  # wide: the time exit decides

    replayed, backtested = _replay_and_backtest(options)

    timed = [t for t in replayed if t[6] == "time"]
    assert timed and all(t[4].strftime("%H:%M") == "09:50" for t in timed)
    assert backtested == replayed


def test_a_trailing_stop_at_the_paper_broker_trades_as_the_backtest(prefect_harness, options, monkeypatch):
    monkeypatch.setenv("OPENBELL_EXITS__TRAIL_PCT", "1.5")
    options = options.model_copy(update={"stop_pct": Decimal(3), "target_pct": Decimal(8)})

    replayed, backtested = _replay_and_backtest(options)

    orders = Store(options.db_path).query("SELECT DISTINCT order_type FROM orders WHERE purpose = 'stop'")
    assert orders == [("trailing_stop",)]
    assert replayed and backtested == replayed


def test_levels_in_atr_multiples_from_the_scan_trade_as_the_backtest(prefect_harness, options, monkeypatch):
    monkeypatch.setenv("OPENBELL_EXITS__TARGET_ATR", "0.6")
    monkeypatch.setenv("OPENBELL_EXITS__STOP_ATR", "0.4")

    replayed, backtested = _replay_and_backtest(options)

    store = Store(options.db_path)
    levels = store.query(
        "SELECT e.symbol, e.avg_fill_price, t.limit_price, c.atr14 FROM orders e "
        "JOIN orders t ON t.symbol = e.symbol AND t.trade_date = e.trade_date AND t.purpose = 'target' "
        "JOIN candidates c ON c.symbol = e.symbol AND c.trade_date = e.trade_date "
        "WHERE e.purpose = 'entry' AND e.trade_date = ?",
        [DAY],
    )
    assert replayed and backtested == replayed
    assert levels and all(abs(float(limit) - (float(entry) + 0.6 * atr)) <= 0.011 for _, entry, limit, atr in levels)


def test_a_break_even_stop_moved_by_the_monitor_trades_as_the_backtest(prefect_harness, options, monkeypatch):
    monkeypatch.setenv("OPENBELL_EXITS__BREAKEVEN_AFTER_PCT", "0.5")
    options = options.model_copy(update={"stop_pct": Decimal(3), "target_pct": Decimal(8)})  # wide: the break-even decides

    replayed, backtested = _replay_and_backtest(options)

    at_entry = Store(options.db_path).query(
        "SELECT symbol FROM trades WHERE trade_date = ? AND exit_reason = 'stop' AND exit_price = entry_price "
        "AND exit_order_id LIKE '%-bestop'",
        [DAY],
    )
    assert at_entry
    assert replayed and backtested == replayed
