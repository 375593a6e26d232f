"""Risk guards on a replayed day (2018-03-01 of the recorded data): what each refused, flattened or halted.

Each limit is set through its OPENBELL_RISK__ variable, as a user sets it, and the day runs through
every flow on the paper broker; a backtest of the same day with the same settings must show the same.
"""

from __future__ import annotations

import json
from datetime import date, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from openbell.config import RunOptions
from openbell.research import jobs
from openbell.research.backtest import BacktestSpec
from openbell.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

DAY = date(2018, 3, 1)  # the ranking trades NVAX, MYL, VEON, NWL, AKS
COLUMNS = "symbol, shares, entry_ts, entry_price, exit_ts, exit_price, exit_reason, commission, pnl"


def backtest_has_the_days_trades(store: Store, options: RunOptions, day: date) -> list[str]:
    """Backtest `day` with the same settings: its trades must be the replayed day's, row by row; returns its notes."""
    backtest = jobs.backtest(BacktestSpec(options.settings(), day, day), report_to=Path(options.db_path).parent / "b.html")
    backtested = store.query(
        f"SELECT {COLUMNS} FROM backtest_trades WHERE run_id = ? ORDER BY symbol", [backtest.result.run_id]
    )
    assert backtested == store.query(f"SELECT {COLUMNS} FROM trades WHERE trade_date = ? ORDER BY symbol", [day])
    return backtest.result.notes


@pytest.fixture
def options(shared_data, tmp_path) -> RunOptions:
    minute, daily = shared_data
    return RunOptions(db_path=str(tmp_path / "openbell.ducklake"), minute_bars=str(minute), daily_bars=str(daily))


def test_max_positions_sends_the_best_ranked_and_records_each_refusal(prefect_harness, options, monkeypatch):
    from openbell.flows.trading_day import trading_day

    monkeypatch.setenv("OPENBELL_RISK__MAX_POSITIONS", "2")
    trading_day(trade_date=DAY, options=options)

    store = Store(options.db_path)
    entries = store.query("SELECT symbol FROM orders WHERE trade_date = ? AND purpose = 'entry' ORDER BY symbol", [DAY])
    refused = store.query(
        "SELECT symbol, rule, action, observed, limit_value FROM risk_events WHERE trade_date = ? ORDER BY symbol", [DAY]
    )
    skipped = store.query(
        "SELECT symbol, skipped_reason FROM sizing WHERE trade_date = ? AND shares = 0 ORDER BY symbol", [DAY]
    )
    assert entries == [("MYL",), ("NVAX",)]
    assert refused == [(s, "max_positions", "refused", 3.0, 2.0) for s in ("AKS", "NWL", "VEON")]
    assert [s for s, _ in skipped] == ["AKS", "NWL", "VEON"]
    assert all(reason == "would be position 3 of at most 2" for _, reason in skipped)

    notes = backtest_has_the_days_trades(store, options, DAY)
    assert any("max_positions" in note or "position 3 of at most 2" in note for note in notes)


def test_flatten_now_sells_what_the_system_opened_and_no_order_follows_that_day(prefect_harness, options):
    from openbell.flows.flatten_now import flatten_now
    from openbell.flows.liquidate_eod import liquidate_eod
    from openbell.flows.place_moo_orders import place_moo_orders
    from openbell.flows.report_eod import report_eod
    from openbell.flows.scan_and_rank import scan_and_rank

    scan_and_rank(DAY, options=options)
    assert place_moo_orders(DAY, options=options) == 5

    sold = flatten_now(DAY, mode="replay", options=options, at=time(9, 45))

    store = Store(options.db_path)
    assert sold == 5
    flattened = store.query(
        "SELECT symbol, status FROM orders WHERE trade_date = ? AND purpose = 'flatten' ORDER BY symbol", [DAY]
    )
    assert [status for _, status in flattened] == ["filled"] * 5
    assert liquidate_eod(DAY, options=options) == 0  # nothing left to flatten
    assert place_moo_orders(DAY, options=options) == 0  # a rerun is refused: the day is halted
    report_eod(DAY, options=options)
    trades = store.query("SELECT exit_reason, count(*) FROM trades WHERE trade_date = ? GROUP BY ALL", [DAY])
    assert trades == [("manual", 5)]
    exits = store.query("SELECT min(exit_ts), max(exit_ts) FROM trades WHERE trade_date = ?", [DAY])
    assert all(t.strftime("%H:%M") == "09:45" for t in exits[0])
    halted = store.query("SELECT rule, action FROM risk_events WHERE trade_date = ? AND symbol IS NULL", [DAY])
    assert halted == [("flatten", "halted")]
    report = report_eod(DAY, options=options)
    assert "risk guards and the learning loop:" in report and "flatten halted: flattened by hand at 09:45:00" in report


def test_a_dry_run_flatten_sells_nothing(prefect_harness, options):
    from openbell.flows.flatten_now import flatten_now
    from openbell.flows.place_moo_orders import place_moo_orders
    from openbell.flows.scan_and_rank import scan_and_rank

    scan_and_rank(DAY, options=options)
    place_moo_orders(DAY, options=options)

    assert flatten_now(DAY, mode="replay", options=options, dry_run=True, at=time(10, 0)) == 5

    store = Store(options.db_path)
    assert store.query("SELECT count(*) FROM orders WHERE purpose = 'flatten'") == [(0,)]
    assert store.query("SELECT count(*) FROM risk_events") == [(0,)]


def test_the_days_summary_reaches_the_users_receiver(prefect_harness, options, monkeypatch):
    from openbell.flows.trading_day import trading_day
    from tests.fakes.loopback import JsonReceiver

    receiver = JsonReceiver()
    try:
        monkeypatch.setenv("OPENBELL_NOTIFY__URLS", json.dumps([receiver.url_for()]))
        trading_day(trade_date=DAY, options=options)
    finally:
        receiver.shutdown()

    ((net,),) = Store(options.db_path).query("SELECT net_pnl FROM daily_pnl WHERE trade_date = ?", [DAY])
    (summary,) = [p for p in receiver.payloads if "2018-03-01" in p["title"]]
    assert f"{abs(net):,.2f}" in summary["title"] + summary["message"]


def _seed_history(store: Store, ranker: str, returns_pct: list[float], spearman: float) -> None:
    """Ten earlier sessions ranked by `ranker`: its trades' returns cycled over them, every session's rank correlation."""
    days = [date(2018, 2, 12) + timedelta(days=i) for i in range(10)]
    store.migrate()
    store.insert("ranking_decisions", [{"trade_date": d, "requested": ranker, "ranker": ranker} for d in days])
    store.insert("ranking_quality", [{"trade_date": d, "ranker": ranker, "horizon": "open_close", "n": 9,
                                      "spearman": spearman} for d in days])  # fmt: skip
    store.insert("trades", [
        {"trade_date": d, "symbol": f"S{i}", "shares": 100, "pnl": Decimal(str(r * 100)), "return_pct": r,
         "exit_reason": "stop" if r < 0 else "target"}
        for d in days for i, r in enumerate(returns_pct)
    ])  # fmt: skip


def test_the_learning_loop_quarantines_a_losing_ranker_and_the_fallback_trades(prefect_harness, options, monkeypatch):
    from openbell.flows.trading_day import trading_day

    monkeypatch.setenv("OPENBELL_LEARNING__ENABLED", "true")
    monkeypatch.setenv("OPENBELL_RANKING__METHOD", "ensemble")
    store = Store(options.db_path)
    _seed_history(store, "ensemble", [-0.9, -0.9, 0.4], spearman=-0.25)  # expectancy -0.47%, ranking worse than random

    report = trading_day(trade_date=DAY, options=options)

    (decision,) = store.query("SELECT requested, ranker, fallback_reason FROM ranking_decisions WHERE trade_date = ?", [DAY])
    assert decision[:2] == ("ensemble", "gap_x_rvol")
    assert decision[2].startswith("ensemble is quarantined: 30 trades, win rate 33%")
    ((state, previous),) = store.query(
        "SELECT state, previous_state FROM ranker_states WHERE trade_date = ? AND ranker = 'ensemble'", [DAY]
    )
    assert (state, previous) == ("quarantined", "active")
    assert "learning loop: ensemble quarantined (was active)" in report
    # the quarantined ranker is still scored, so it can earn its way back
    assert store.query("SELECT count(*) FROM ranking_quality WHERE trade_date = ? AND ranker = 'ensemble'", [DAY]) != [(0,)]


def test_the_learning_loop_throttles_a_ranker_with_a_poor_win_rate(prefect_harness, options, monkeypatch):
    from openbell.flows.trading_day import trading_day

    monkeypatch.setenv("OPENBELL_LEARNING__ENABLED", "true")
    store = Store(options.db_path)
    _seed_history(store, "gap_x_rvol", [-0.2, -0.2, 1.5], spearman=0.1)  # win rate 33%, expectancy +0.37%

    trading_day(trade_date=DAY, options=options)

    sized = dict(store.query("SELECT symbol, notional FROM sizing WHERE trade_date = ? AND shares > 0", [DAY]))
    assert sized and all(Decimal(4_900) < n <= Decimal(5_000) for n in sized.values())  # half of $10,000
    assert store.query("SELECT state FROM ranker_states WHERE trade_date = ? AND ranker = 'gap_x_rvol'", [DAY]) == [
        ("throttled",)
    ]


def test_the_kill_switch_trips_flattens_and_the_backtest_does_the_same(prefect_harness, options, monkeypatch):
    from openbell.flows.place_moo_orders import place_moo_orders
    from openbell.flows.trading_day import trading_day

    monkeypatch.setenv("OPENBELL_RISK__DAILY_LOSS_USD", "500")
    options = options.model_copy(update={"target_pct": Decimal(20), "stop_pct": Decimal(15)})  # wide: NVAX alone lost $1,544
    report = trading_day(trade_date=DAY, options=options)

    store = Store(options.db_path)
    ((rule, action, observed, limit, message),) = store.query(
        "SELECT rule, action, observed, limit_value, message FROM risk_events WHERE trade_date = ? AND action = 'halted'",
        [DAY],
    )
    assert (rule, action, limit) == ("daily_loss_usd", "halted", 500.0) and observed >= 500
    reasons = dict(store.query("SELECT exit_reason, count(*) FROM trades WHERE trade_date = ? GROUP BY ALL", [DAY]))
    assert reasons.get("kill_switch", 0) >= 1
    ((net,),) = store.query("SELECT net_pnl FROM daily_pnl WHERE trade_date = ?", [DAY])
    assert Decimal(-1_544) < net < Decimal(-500)
    assert "daily_loss_usd halted" in report
    assert store.query("SELECT count(*) FROM paper_orders WHERE status = 'new'") == [(0,)]
    assert place_moo_orders(DAY, options=options) == 0  # a restarted order flow obeys the trip

    notes = backtest_has_the_days_trades(store, options, DAY)
    assert any("the day's loss" in note for note in notes)


def test_a_drawdown_past_its_limit_halts_entries_until_the_user_resets_it(prefect_harness, options, monkeypatch, capsys):
    from openbell.cli import main
    from openbell.flows.place_moo_orders import place_moo_orders
    from openbell.flows.scan_and_rank import scan_and_rank

    monkeypatch.setenv("OPENBELL_RISK__MAX_DRAWDOWN_PCT", "5")
    store = Store(options.db_path)
    store.migrate()  # closes of $107,000, $103,000, then $100,000 (the account now): 6.5% below the peak
    store.insert("daily_pnl", [{"trade_date": date(2018, 2, 26 + i), "net_pnl": Decimal(p)}
                               for i, p in enumerate([2_000, -4_000, -3_000])])  # fmt: skip
    scan_and_rank(DAY, options=options)

    assert place_moo_orders(DAY, options=options) == 0
    ((rule, action, observed, message),) = store.query(
        "SELECT rule, action, observed, message FROM risk_events WHERE action = 'entries_halted'"
    )
    assert (rule, action) == ("max_drawdown_pct", "entries_halted") and observed == pytest.approx(100 * 7_000 / 107_000)
    assert "below its peak" in message
    capsys.readouterr()
    assert main(["risk", "status", "--replay", "--db", options.db_path]) == 0
    status = capsys.readouterr().out
    assert "limits: max_drawdown_pct 5" in status and "new entries: halted: equity $100,000.00" in status
    assert "entries_halted" in status  # the latest events

    assert main(["risk", "reset", "--replay", "--db", options.db_path]) == 0

    assert place_moo_orders(DAY, options=options) == 5  # measured from the reset on: nothing to halt
    assert main(["risk", "status", "--replay", "--db", options.db_path]) == 0
    assert "new entries: allowed" in capsys.readouterr().out


def test_risk_status_on_a_store_not_made_yet_says_so_and_creates_nothing(tmp_path, capsys):
    from openbell.cli import main

    assert main(["risk", "status", "--db", str(tmp_path / "none.ducklake")]) == 0
    assert "no store at" in capsys.readouterr().out and list(tmp_path.iterdir()) == []


def test_a_backtest_shows_the_drawdown_halt_it_would_have_made(prefect_harness, options, monkeypatch):
    monkeypatch.setenv("OPENBELL_RISK__MAX_DRAWDOWN_PCT", "0.5")
    start, end = date(2018, 2, 20), date(2018, 3, 9)

    finished = jobs.backtest(BacktestSpec(options.settings(), start, end), report_to=Path(options.db_path).parent / "b.html")

    halts = [n for n in finished.result.notes if "new entries halted for the rest of the range" in n]
    assert len(halts) == 1
    halted_on = date.fromisoformat(halts[0].removeprefix("risk: ")[:10])
    traded_after = finished.result.trades[finished.result.trades["trade_date"] >= halted_on]
    assert traded_after.empty and len(finished.result.trades) > 0


def test_the_days_profit_target_flattens_the_day_and_the_backtest_does_the_same(prefect_harness, options, monkeypatch):
    from openbell.flows.place_moo_orders import place_moo_orders
    from openbell.flows.trading_day import trading_day

    day = date(2018, 3, 6)  # with the default exits the day's P&L reaches +$100 at 13:31, after some exits
    monkeypatch.setenv("OPENBELL_RISK__DAILY_PROFIT_USD", "100")
    report = trading_day(trade_date=day, options=options)

    store = Store(options.db_path)
    ((rule, observed, limit, ts),) = store.query(
        "SELECT rule, observed, limit_value, ts FROM risk_events WHERE trade_date = ? AND action = 'halted'", [day]
    )
    assert (rule, limit) == ("daily_profit_usd", 100.0) and observed >= 100
    trades = store.query("SELECT exit_reason, exit_ts FROM trades WHERE trade_date = ?", [day])
    flattened = [exit_ts for reason, exit_ts in trades if reason == "day_target"]
    assert flattened and all(exit_ts >= ts for exit_ts in flattened)  # the open of the bar after the trip
    assert all(exit_ts < ts for reason, exit_ts in trades if reason != "day_target")  # closed before, by their exits
    assert "daily_profit_usd halted" in report
    assert store.query("SELECT count(*) FROM paper_orders WHERE status = 'new'") == [(0,)]
    assert place_moo_orders(day, options=options) == 0  # a restarted order flow obeys it too

    notes = backtest_has_the_days_trades(store, options, day)
    assert any("the day's profit" in note for note in notes)
