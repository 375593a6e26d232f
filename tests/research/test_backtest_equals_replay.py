"""A backtest decides and trades each session as `openbell replay` does: the same trades, row by row.

Three recorded days are replayed through every Prefect flow (scan, ranking, market-on-open orders on
the paper broker, the exit monitor, liquidation, the report); a backtest over the range that holds
them must write, for each of those days, exactly the trades the flows wrote.
"""

from __future__ import annotations

from datetime import date

import pytest

from openbell.config import RunOptions
from openbell.research import jobs
from openbell.research.backtest import BacktestSpec
from openbell.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

DAYS = [date(2018, 2, 27), date(2018, 2, 28), date(2018, 3, 1)]
COLUMNS = "symbol, shares, entry_ts, entry_price, exit_ts, exit_price, exit_reason, commission, pnl"


@pytest.fixture(scope="module")
def database(prefect_harness, shared_data, tmp_path_factory):
    """The three days replayed through the flows, then backtested over 2018-02-27 .. 2018-03-01, in one database."""
    from openbell.flows.trading_day import trading_day

    minute, daily = shared_data
    db = tmp_path_factory.mktemp("research") / "openbell.ducklake"
    options = RunOptions(db_path=str(db), minute_bars=str(minute), daily_bars=str(daily))
    for day in DAYS:
        trading_day(trade_date=day, options=options)
    finished = jobs.backtest(BacktestSpec(options.settings(), DAYS[0], DAYS[-1]), report_to=db.parent / "backtest.html")
    return Store(db), finished


@pytest.mark.parametrize("day", DAYS, ids=str)
def test_each_session_trades_as_the_replayed_day(database, day: date):
    store, finished = database

    replayed = store.query(f"SELECT {COLUMNS} FROM trades WHERE trade_date = ? ORDER BY symbol", [day])
    backtested = store.query(
        f"SELECT {COLUMNS} FROM backtest_trades WHERE run_id = ? AND trade_date = ? ORDER BY symbol",
        [finished.result.run_id, day],
    )

    assert len(replayed) >= 2
    assert backtested == replayed


def test_the_account_carries_each_days_pnl(database):
    store, finished = database

    days = store.query(
        "SELECT trade_date, equity, pnl FROM backtest_daily WHERE run_id = ? ORDER BY trade_date", [finished.result.run_id]
    )
    net = dict(store.query("SELECT trade_date, net_pnl FROM daily_pnl"))

    assert [d for d, _, _ in days] == DAYS
    assert [pnl for d, _, pnl in days] == [net[d] for d in DAYS]
    assert days[-1][1] == 100_000 + sum(net[d] for d in DAYS)


def test_the_backtest_leaves_the_day_tables_alone(database):
    store, finished = database

    ((runs,),) = store.query("SELECT count(*) FROM runs WHERE flow = 'backtest'")
    ((recorded,),) = store.query("SELECT count(*) FROM backtest_runs WHERE run_id = ?", [finished.result.run_id])
    assert runs == 0 and recorded == 1
    assert finished.report.read_text().count("<html") == 1
