"""The two ways a backtest gets its bars agree: the range laid out at once equals the days read one by one."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from openbell.config import RunOptions
from openbell.core.prices import to_units
from openbell.research.backtest import BacktestSpec, plan_in_process, run_backtest
from openbell.venues.replay import ParquetReplaySource

pytestmark = pytest.mark.shared_data

START, END = date(2018, 2, 16), date(2018, 3, 9)


def test_the_range_laid_out_at_once_equals_the_minute_bars(shared_data):
    source = ParquetReplaySource(*shared_data)

    bars, sessions = source.session_bars_between(START, END)
    frame = source.minute_bars_between(START, END)

    session = (frame["symbol"] + " " + frame["ts"].dt.date.astype(str)).to_numpy()
    starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    assert bars.n_bars == len(frame) > 1_500_000
    assert (bars.starts == starts).all()
    for column in ("open", "high", "low", "close"):
        assert (getattr(bars, column) == to_units(frame[column].to_numpy())).all(), column
    assert (bars.minute == (frame["ts"].dt.hour * 60 + frame["ts"].dt.minute).to_numpy()).all()
    assert list(sessions["symbol"]) == list(frame["symbol"].to_numpy()[starts])
    assert list(sessions["day"]) == list(frame["ts"].dt.date.to_numpy()[starts])
    rejected = source.rejected_rows
    assert set(rejected.loc[rejected["symbol"] == "PBR", "reason"]) == {"duplicate bar"}  # a mixed series is out


def test_fixed_symbols_sized_from_the_range_equal_the_day_by_day_plans(shared_data, tmp_path):
    minute, daily = shared_data
    settings = RunOptions(
        minute_bars=str(minute), daily_bars=str(daily), db_path=str(tmp_path / "x.ducklake"), starting_equity=5_000_000
    ).settings()
    # GE split later (the daily file is adjusted), PBR's bars are rejected, FTR gaps: every path of the sizing
    spec = BacktestSpec(settings, date(2018, 2, 26), date(2018, 3, 2), ("AAPL", "NVAX", "TSLA", "PBR", "GE", "FTR"))

    from_the_range = run_backtest(spec, run_id="range")
    day_by_day = run_backtest(spec, run_id="days", planner=plan_in_process)

    assert len(from_the_range.trades) > 15
    pd.testing.assert_frame_equal(from_the_range.trades, day_by_day.trades)
    pd.testing.assert_frame_equal(from_the_range.daily, day_by_day.daily)
