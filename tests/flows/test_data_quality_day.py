"""The data-quality gate on a replayed day with bad bars written into its Parquet file, and in a backtest of that day.

A small synthetic market gets three kinds of bad rows: a duplicated minute (the symbol's whole day is dropped),
a bar with high below low and a spike in the previous session of a symbol that would be picked (two problems:
its score falls below the threshold), and a bar with a missing close after the open (dropped, recorded, not
scored). The scan flow records every one in `data_quality`, counts them in its log, keeps the symbols in
`candidates` with their reject reason; the backtest of the day makes the same decision.
"""

from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path

import pandas as pd
import pytest

from openbell.calendar import NEW_YORK
from openbell.config import RunOptions
from openbell.research.backtest import BacktestSpec, plan_session, run_backtest
from openbell.store import Store
from openbell.venues.synthetic import generate_synthetic_market

pytestmark = pytest.mark.slow

DAY, PRIOR = date(2025, 3, 7), date(2025, 3, 6)
PICK, KEPT, DOUBLED, HOLED = "YABZ", "PWR", "AFT", "AMQ"  # YABZ and PWR pass the clean scan


def at(day: date, hh: int, mm: int) -> pd.Timestamp:
    return pd.Timestamp(datetime.combine(day, time(hh, mm), NEW_YORK))


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(clean minute file, dirty minute file, daily file)."""
    folder = tmp_path_factory.mktemp("market")
    clean = generate_synthetic_market(folder, seed=3, n_symbols=40, minute_sessions=[PRIOR, DAY], history_sessions=30)
    bars = pd.read_parquet(clean.minute_path)
    assert {PICK, KEPT, DOUBLED, HOLED} <= set(bars["symbol"])
    row = lambda symbol, ts: bars.index[(bars["symbol"] == symbol) & (bars["ts"] == ts)][0]  # noqa: E731
    dirty = bars.copy()
    bad = row(PICK, at(PRIOR, 11, 0))
    dirty.loc[bad, "high"] = dirty.loc[bad, "low"] - 0.01  # high below low: dropped
    spike = row(PICK, at(PRIOR, 12, 0))
    dirty.loc[spike, "high"] = dirty.loc[spike, "close"] * 1.3  # 30% above both neighbours: an outlier
    dirty.loc[row(HOLED, at(DAY, 11, 0)), "close"] = float("nan")  # after the scan: recorded, not scored
    doubled = dirty.loc[[row(DOUBLED, at(DAY, 10, 0))]]
    dirty = pd.concat([dirty, doubled], ignore_index=True)  # a duplicated minute: the day of DOUBLED is dropped
    dirty_path = folder / "dirty_minute_bars.parquet"
    dirty.to_parquet(dirty_path, index=False)
    return clean.minute_path, dirty_path, clean.daily_path


def options(minute: Path, daily: Path, db: Path) -> RunOptions:
    return RunOptions(minute_bars=str(minute), daily_bars=str(daily), db_path=str(db))


def test_the_clean_day_picks_the_symbol_the_bad_bars_exclude(market, tmp_path):
    clean, _, daily = market
    plan = plan_session(BacktestSpec(options(clean, daily, tmp_path / "c.ducklake").settings(), DAY, DAY), DAY)

    assert {s for s, _ in plan.picks} == {PICK, KEPT}


def test_the_scan_records_bad_bars_counts_them_and_rejects_the_symbols_with_the_reason(
    prefect_harness, market, tmp_path, caplog
):
    from openbell.flows.premarket_scan import premarket_scan

    _, dirty, daily = market
    run = options(dirty, daily, tmp_path / "openbell.ducklake")  # the duplicated minute is an exact copy: one distinct row

    passed = premarket_scan(DAY, options=run)

    store = Store(run.db_path)
    reasons = dict(store.query("SELECT symbol, reject_reason FROM candidates WHERE trade_date = ? AND NOT passed", [DAY]))
    assert passed == 1
    assert reasons[PICK].startswith("data quality 0.00 below 0.5: ")
    assert "high below low" in reasons[PICK] and "beyond both neighbours' closes" in reasons[PICK]
    assert reasons[DOUBLED] == (
        f"data quality 0.00: duplicate minute bars: all {_day_bars(market[0], DOUBLED)} bars of {DAY} dropped; "
        "no opening print: the day's 09:30 bar was dropped"
    )
    issues = store.query(
        'SELECT symbol, source, bar_date, ts, "check", value, score FROM data_quality '
        'WHERE trade_date = ? AND "check" <> \'score\' ORDER BY symbol, "check"',
        [DAY],
    )
    assert [(s, src, d, c) for s, src, d, _, c, _, _ in issues] == [
        (DOUBLED, "minute", DAY, "duplicate_bar"),
        (DOUBLED, "scan", DAY, "no_opening_print"),
        (HOLED, "minute", DAY, "missing_value"),
        (PICK, "minute", PRIOR, "high_below_low"),
        (PICK, "minute", PRIOR, "outlier_atr"),
        (PICK, "minute", PRIOR, "outlier_neighbours"),
    ]
    assert [issue[3] for issue in issues[3:]] == [at(PRIOR, 11, 0), at(PRIOR, 12, 0), at(PRIOR, 12, 0)]
    scores = dict(store.query("SELECT symbol, value FROM data_quality WHERE trade_date = ? AND \"check\" = 'score'", [DAY]))
    assert (scores[PICK], scores[DOUBLED], scores[HOLED], scores[KEPT]) == (0.0, 0.0, 1.0, 1.0)
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"data quality of {DAY}")]
    assert logged == [
        f"data quality of {DAY}: 2 bars dropped (high_below_low 1, missing_value 1); 1 symbol-days dropped "
        f"(duplicate bars); 2 of {len(scores)} symbols below the score 0.5 ({DOUBLED}, {PICK}); "
        "symbols failing a check: no_opening_print 1, outlier_atr 1, outlier_neighbours 1"
    ]


def test_a_backtest_of_the_dirty_day_makes_the_same_decision(market, tmp_path):
    _, dirty, daily = market
    spec = BacktestSpec(options(dirty, daily, tmp_path / "b.ducklake").settings(), DAY, DAY)

    plan = plan_session(spec, DAY)
    result = run_backtest(spec, run_id="dirty")

    assert ({s for s, _ in plan.picks}, plan.candidates) == ({KEPT}, 1)
    assert set(result.trades["symbol"]) <= {KEPT}


def _day_bars(path: Path, symbol: str) -> int:
    bars = pd.read_parquet(path)
    return int(((bars["symbol"] == symbol) & (bars["ts"].dt.date == DAY)).sum())
