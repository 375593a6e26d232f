"""The learning loop in a backtest: judged from the backtest's own sessions, by the trading day's rule.

Over four recorded sessions (2018-02-26 .. 2018-03-01) ranked by the ensemble, thresholds low enough
to act on a day's record: the ensemble's four losing trades of 02-26 quarantine it from 02-27 (the
quant fallback's picks trade), and the fallback's win rate of 4 in 7 throttles it on 03-01 (half
the size). The backtest must show that, and trade each session as the replayed trading day does.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from openbell.config import RunOptions
from openbell.research import jobs
from openbell.research.backtest import BacktestSpec, run_backtest
from openbell.research.results import BacktestResult
from openbell.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

DAYS = [date(2018, 2, 26), date(2018, 2, 27), date(2018, 2, 28), date(2018, 3, 1)]
LOOP = {
    "OPENBELL_LEARNING__ENABLED": "true",
    "OPENBELL_LEARNING__MIN_TRADES": "3",
    "OPENBELL_LEARNING__THROTTLE_WIN_RATE": "0.75",
}
COLUMNS = "symbol, shares, entry_ts, entry_price, exit_ts, exit_price, exit_reason, commission, pnl"


@pytest.fixture
def options(shared_data, tmp_path, monkeypatch) -> RunOptions:
    minute, daily = shared_data
    monkeypatch.setenv("OPENBELL_RANKING__METHOD", "ensemble")
    return RunOptions(db_path=str(tmp_path / "openbell.ducklake"), minute_bars=str(minute), daily_bars=str(daily))


def _backtest(options: RunOptions, **environment: str) -> BacktestResult:
    """A backtest over DAYS with the settings of `environment` on top of the options'."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        return run_backtest(BacktestSpec(options.settings(), DAYS[0], DAYS[-1]), run_id="test")


def test_a_quarantined_ranker_hands_its_sessions_to_the_fallback_and_a_throttled_one_trades_half(options):
    with_loop = _backtest(options, **LOOP)
    off = _backtest(options)  # the loop off: the ensemble trades every session in full
    ensemble = off.trades
    quant = _backtest(options, OPENBELL_RANKING__METHOD="quant").trades

    judged, notes = with_loop.trades, "\n".join(with_loop.notes)
    assert "learning loop: 2018-02-27: ensemble quarantined (was active): 4 trades, win rate 0%" in notes
    assert "learning loop: 2018-03-01: gap_x_rvol throttled (was active): 7 trades, win rate 57%" in notes
    assert "learning loop: 3 session(s) traded gap_x_rvol's picks: ensemble quarantined" in notes
    assert not any(note.startswith("learning loop") for note in off.notes)

    def on(trades: pd.DataFrame, *days: date) -> pd.DataFrame:
        return trades[trades["trade_date"].isin(days)].set_index(["trade_date", "symbol"]).sort_index()

    first, quarantined, throttled = DAYS[:1], DAYS[1:3], DAYS[3:]
    assert (on(judged, *first)["ranker"] == "ensemble").all()
    pd.testing.assert_frame_equal(on(judged, *first), on(ensemble, *first))
    assert (on(judged, *DAYS[1:])["ranker"] == "gap_x_rvol").all()
    pd.testing.assert_frame_equal(on(judged, *quarantined), on(quant, *quarantined))
    half, full = on(judged, *throttled), on(quant, *throttled)
    assert len(half) == 5 and list(half.index) == list(full.index)
    assert (half["shares"] == full["shares"] // 2).all()  # $5,000 of each pick instead of $10,000


def test_the_backtest_judges_and_trades_each_session_as_the_replayed_days_do(prefect_harness, options, monkeypatch):
    from openbell.flows.trading_day import trading_day

    for name, value in LOOP.items():
        monkeypatch.setenv(name, value)
    for day in DAYS:
        trading_day(trade_date=day, options=options)
    finished = jobs.backtest(
        BacktestSpec(options.settings(), DAYS[0], DAYS[-1]), report_to=Path(options.db_path).parent / "b.html"
    )

    store, run_id = Store(options.db_path), finished.result.run_id
    for day in DAYS:
        replayed = store.query(f"SELECT {COLUMNS} FROM trades WHERE trade_date = ? ORDER BY symbol", [day])
        backtested = store.query(
            f"SELECT {COLUMNS} FROM backtest_trades WHERE run_id = ? AND trade_date = ? ORDER BY symbol", [run_id, day]
        )
        assert backtested == replayed, day
    rankers = store.query("SELECT trade_date, ranker FROM ranking_decisions ORDER BY trade_date")
    traded = store.query("SELECT DISTINCT trade_date, ranker FROM backtest_trades WHERE run_id = ? ORDER BY 1", [run_id])
    assert traded == rankers == [(DAYS[0], "ensemble")] + [(day, "gap_x_rvol") for day in DAYS[1:]]
    changes = store.query(
        "SELECT trade_date, ranker, state, previous_state, reason FROM ranker_states WHERE state <> previous_state "
        "ORDER BY trade_date, ranker"
    )
    assert [f"learning loop: {d}: {r} {s} (was {p}): {why}" for d, r, s, p, why in changes] == [
        note for note in finished.result.notes if note.startswith("learning loop: 20")
    ]
    assert len(changes) == 2
