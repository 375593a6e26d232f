"""`openbell sweep` on the synthetic market: the grid over the same entries, a backtest's numbers at its own exits."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbell.cli import main
from openbell.store import Store

START, END = "2025-03-03", "2025-03-07"


def test_every_combination_is_recorded_and_the_default_exits_equal_a_backtest(data: Path, tmp_path: Path, capsys):
    report = tmp_path / "sweep.html"

    swept = main(["sweep", "--start", START, "--end", END, "--target-pct", "1:3:0.4", "--stop-pct", "0.5,0.9,1.5",
                  "--liquidation", "15:45,14:00", "--report", str(report)])  # fmt: skip
    backtested = main(["backtest", "--start", START, "--end", END])

    out = capsys.readouterr().out
    assert swept == backtested == 0
    store = Store(data)
    ((sweep_id,), (backtest_id,)) = store.query("SELECT run_id FROM backtest_runs ORDER BY kind DESC")
    variants = {v for (v,) in store.query("SELECT DISTINCT variant FROM backtest_metrics WHERE run_id = ?", [sweep_id])}
    assert len(variants) == 6 * 3 * 2  # 1, 1.4, 1.8, 2.2, 2.6, 3 x three stops x two times
    at_default = dict(
        store.query(
            "SELECT metric, value FROM backtest_metrics WHERE run_id = ? AND variant = '+2.6% / -0.9% / 15:45'", [sweep_id]
        )  # fmt: skip
    )
    backtest = dict(store.query("SELECT metric, value FROM backtest_metrics WHERE run_id = ?", [backtest_id]))
    for key in ("total_return_pct", "sharpe", "max_drawdown_pct", "win_rate_pct", "profit_factor", "trades"):
        assert at_default[key] == pytest.approx(backtest[key], rel=1e-9), key
    assert "chosen on the first 3 sessions" in out and "on the other 2 sessions" in out
    assert report.exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--target-pct", "1:4:0", "--stop-pct", "1"], "the step must be positive"),
        (["--target-pct", "4:1:0.5", "--stop-pct", "1"], "the range is empty"),
        (["--target-pct", "abc", "--stop-pct", "1"], "is not a grid of numbers"),
        (["--target-pct", "1:2", "--stop-pct", "1"], "give FROM:TO:STEP"),
        (["--target-pct", "2", "--stop-pct", "100"], "exit grid: stop_pct must be a percentage between 0 and 100"),
        (["--target-pct", "2", "--stop-pct", "1", "--metric", "luck"], "unknown metric 'luck'; rank by one of"),
        (["--target-pct", "2", "--stop-pct", "1", "--in-sample", "1.5"], "between 0 and 1"),
        (["--target-pct", "2", "--stop-pct", "1", "--liquidation", "3pm"], "give New York times like 15:45,15:00"),
    ],
    ids=[
        "zero step",
        "empty range",
        "not numbers",
        "two parts",
        "stop of 100%",
        "unknown metric",
        "in-sample share",
        "bad time",
    ],  # fmt: skip
)
def test_a_bad_grid_ends_in_one_line_and_records_nothing(data: Path, capsys, argv, expected):
    code = main(["sweep", "--start", START, "--end", END, *argv])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert not data.exists() or Store(data).query("SELECT count(*) FROM backtest_runs") == [(0,)]


def test_a_sweep_needs_two_sessions_to_check_itself(data: Path, capsys):
    code = main(["sweep", "--start", START, "--end", START, "--target-pct", "2", "--stop-pct", "1"])

    assert code == 2
    assert "give at least two sessions" in capsys.readouterr().err
