"""`openbell backtest` and `openbell compare` on the synthetic market: the run, its records, and every mistake in one line.

A backtest needs no Prefect server: these run the CLI in this process.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from openbell.cli import main
from openbell.store import Store

SESSIONS = ("2025-03-03", "2025-03-07")  # the synthetic market's minute sessions


def refusal(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("openbell: ") and "Traceback" not in err, err
    return lines[0]


def test_a_backtest_records_its_run_and_writes_its_report(data: Path, tmp_path: Path, capsys):
    report = tmp_path / "out" / "run.html"

    code = main(["backtest", "--start", SESSIONS[0], "--end", SESSIONS[1], "--report", str(report)])

    out = capsys.readouterr().out
    assert code == 0
    assert "Sharpe" in out and f"report: {report}" in out
    store = Store(data)
    ((run_id, kind, wall_s, files),) = store.query("SELECT run_id, kind, wall_s, data_files FROM backtest_runs")
    assert kind == "backtest" and wall_s > 0 and "sha256" in files
    days = store.query("SELECT trade_date, equity, pnl FROM backtest_daily WHERE run_id = ? ORDER BY trade_date", [run_id])
    ((trades, pnl),) = store.query("SELECT count(*), sum(pnl) FROM backtest_trades WHERE run_id = ?", [run_id])
    metrics = dict(store.query("SELECT metric, value FROM backtest_metrics WHERE run_id = ?", [run_id]))
    assert len(days) == 5
    assert days[-1][1] == Decimal(100_000) + pnl == Decimal(100_000) + sum(d[2] for d in days)
    assert metrics["trades"] == trades > 0
    assert metrics["total_return_pct"] == pytest.approx(float(pnl) / 1_000)
    assert report.read_text().startswith("<!DOCTYPE html>")


def test_the_account_carries_over_and_sizes_by_its_equity(data: Path, capsys, monkeypatch):
    monkeypatch.setenv("OPENBELL_SIZING__PCT_OF_EQUITY", "10")

    assert main(["backtest", "--start", SESSIONS[0], "--end", SESSIONS[1]]) == 0

    store = Store(data)
    rows = store.query(
        "SELECT d.trade_date, d.equity - d.pnl AS start_equity, t.entry_price * t.shares AS notional "
        "FROM backtest_trades t JOIN backtest_daily d USING (run_id, trade_date)"
    )
    assert rows
    for _, start_equity, notional in rows:  # 10% of that morning's equity, whole shares, below one more share
        assert start_equity / 10 - notional >= 0
        assert notional > start_equity / 10 * Decimal("0.9")


def test_buying_power_limits_the_day(data: Path, capsys, monkeypatch):
    monkeypatch.setenv("OPENBELL_SIZING__ALLOCATION", "40000")  # three picks of five fit in $100,000

    assert main(["backtest", "--start", SESSIONS[0], "--end", SESSIONS[0]]) == 0

    out = capsys.readouterr().out
    store = Store(data)
    ((notional,),) = store.query("SELECT sum(entry_price * shares) FROM backtest_trades")
    assert 0 < notional <= 100_000
    assert "skipped by sizing" in out and "of buying power left" in out


def test_a_comparison_trades_every_ranker_on_the_same_sessions(data: Path, tmp_path: Path, capsys):
    report = tmp_path / "compare.html"

    code = main(["compare", "--start", SESSIONS[0], "--end", SESSIONS[1], "--rankers", "gap_x_rvol,rsi,ensemble",
                 "--report", str(report)])  # fmt: skip

    assert code == 0
    store = Store(data)
    variants = dict(
        store.query(
            "SELECT variant, count(DISTINCT trade_date) FROM backtest_daily d JOIN backtest_metrics m USING (run_id) "
            "WHERE metric = 'trades' GROUP BY variant"
        )  # fmt: skip
    )
    rankers = {r for (r,) in store.query("SELECT DISTINCT ranker FROM backtest_daily")}
    assert set(variants) == {"gap_x_rvol", "rsi", "ensemble"} and set(variants.values()) == {5}
    assert rankers == {"gap_x_rvol", "rsi", "ensemble"}
    assert report.exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--start", "2025-03-08", "--end", "2025-03-09"], "no session between 2025-03-08 and 2025-03-09"),
        (["--start", "2024-01-02", "--end", "2024-01-31"], "(it covers 2025-03-03 to 2025-03-07)"),
        (["--start", "2025-03-07", "--end", "2025-03-03"], "the range starts after it ends"),
        (["--start", "2031-01-02", "--end", "2031-01-05"], "outside the exchange calendar"),
        (["--start", SESSIONS[0], "--end", SESSIONS[1], "--symbols", "NOPE"], "unknown symbol(s) NOPE"),
        (
            ["--start", SESSIONS[0], "--end", SESSIONS[1], "--target-pct", "-1"],
            "--target-pct: Input should be greater than 0",
        ),
        (
            ["--start", SESSIONS[0], "--end", SESSIONS[1], "--report", "/proc/openbell/report.html"],
            "cannot write the report",
        ),
        (["--start", SESSIONS[0], "--end", SESSIONS[1], "--report", "report.txt"], "give a path ending in .html"),
    ],
    ids=[
        "weekend",
        "outside the data",
        "reversed",
        "outside the calendar",
        "unknown symbol",
        "bad target",
        "unwritable report",
        "not html",
    ],  # fmt: skip
)
def test_a_mistake_ends_in_one_line_and_records_nothing(data: Path, capsys, argv, expected):
    line = refusal(capsys, "backtest", *argv)

    assert expected in line
    if data.exists():
        assert Store(data).query("SELECT count(*) FROM backtest_runs") == [(0,)]


def test_compare_refuses_fixed_symbols(data: Path, capsys):
    assert "leave out --symbols" in refusal(
        capsys, "compare", "--start", SESSIONS[0], "--end", SESSIONS[1], "--symbols", "AAA"
    )


def test_slippage_worsens_the_market_fills_and_commissions_are_charged(data: Path, capsys):
    assert main(["backtest", "--start", SESSIONS[0], "--end", SESSIONS[1]]) == 0
    assert main(["backtest", "--start", SESSIONS[0], "--end", SESSIONS[1], "--slippage-bps", "20"]) == 0

    store = Store(data)
    (plain, slipped) = [r for (r,) in store.query("SELECT run_id FROM backtest_runs ORDER BY started_at")]
    rows = {
        run: store.query(
            "SELECT symbol, trade_date, shares, entry_price, commission, pnl, exit_reason FROM backtest_trades "
            "WHERE run_id = ? ORDER BY trade_date, symbol",
            [run],
        )
        for run in (plain, slipped)
    }
    assert [r[:3] for r in rows[plain]] == [r[:3] for r in rows[slipped]]  # the same positions
    for a, b in zip(rows[plain], rows[slipped], strict=True):
        assert b[3] > a[3]  # bought 0.2% higher (the tick rounding included)
        assert b[4] == a[4] == max(Decimal(1), Decimal("0.005") * a[2]) * 2  # entry and exit, per order
    assert sum(r[5] for r in rows[slipped]) < sum(r[5] for r in rows[plain])
