"""The synthetic market's day through the flows: the demo path, phases run one by one, and guards."""

from __future__ import annotations

from datetime import date

import pytest

from openbell import wiring
from openbell.config import RunOptions
from openbell.store import DAY_TABLES, Store

pytestmark = pytest.mark.slow


def _store(data_dir) -> Store:
    return Store(data_dir / "openbell.ducklake")


def _trades(store: Store) -> list[tuple]:
    return store.query("SELECT symbol, shares, entry_price, exit_price, exit_reason, pnl FROM trades ORDER BY symbol")


def test_demo_day_scans_ranks_and_trades_the_top_picks(prefect_harness, data_dir):
    from openbell.flows.trading_day import trading_day

    report = trading_day()
    store = _store(data_dir)
    ((day,),) = store.query("SELECT DISTINCT trade_date FROM trades")
    ((candidates,),) = store.query("SELECT count(*) FROM candidates WHERE passed")
    picks = [s for (s,) in store.query("SELECT symbol FROM rankings WHERE selected ORDER BY rank")]
    traded = {s for (s, *_) in _trades(store)}
    assert day == date(2025, 3, 7)  # the synthetic market's last session
    assert candidates >= 1
    assert len(picks) == min(5, candidates)  # top_n is 5
    assert traded <= set(picks) and traded
    assert f"openbell report for {day}" in report


def test_each_phase_runs_on_its_own_and_gives_the_same_day(prefect_harness, data_dir):
    from openbell.flows.liquidate_eod import liquidate_eod
    from openbell.flows.monitor_exits import monitor_exits
    from openbell.flows.place_moo_orders import place_moo_orders
    from openbell.flows.premarket_scan import premarket_scan
    from openbell.flows.rank_candidates import rank_candidates
    from openbell.flows.report_eod import report_eod
    from openbell.flows.trading_day import trading_day

    day = date(2025, 3, 6)
    whole = trading_day(trade_date=day)
    expected = _trades(_store(data_dir))
    _store(data_dir).delete_day(day)

    premarket_scan(day)
    rank_candidates(day)
    place_moo_orders(day)
    monitor_exits(day)
    liquidate_eod(day)
    phased = report_eod(day)

    assert _trades(_store(data_dir)) == expected
    assert phased == whole


def test_the_monitor_sells_what_is_still_held_at_the_liquidation_time_without_the_liquidation_flow(
    prefect_harness, data_dir, caplog
):
    from openbell.flows.monitor_exits import monitor_exits
    from openbell.flows.place_moo_orders import place_moo_orders
    from openbell.flows.premarket_scan import premarket_scan
    from openbell.flows.rank_candidates import rank_candidates

    day = date(2025, 3, 6)
    wide = RunOptions(target_pct=20, stop_pct=15)  # nothing reaches its exits: every position is held to 15:45
    premarket_scan(day, options=wide)
    rank_candidates(day, options=wide)
    assert place_moo_orders(day, options=wide) > 0
    monitor_exits(day, options=wide)  # and no liquidate-eod run (its server away at 15:45, say)

    store = _store(data_dir)
    held = store.query(
        "SELECT symbol, sum(CASE side WHEN 'buy' THEN qty ELSE -qty END) FROM fills WHERE trade_date = ? GROUP BY ALL "
        "HAVING sum(CASE side WHEN 'buy' THEN qty ELSE -qty END) <> 0",
        [day],
    )
    assert held == []
    sold = store.query("SELECT count(*), min(submitted_at) FROM orders WHERE trade_date = ? AND purpose = 'eod'", [day])
    caplog.clear()
    entries = place_moo_orders(day, options=wide)  # a rerun of the order phase: the broker has them all
    assert sold[0][0] == entries and f"{sold[0][1]:%H:%M}" == "15:45"
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("market-on-open orders for")]
    assert said == [f"market-on-open orders for {day}: 0 sent, {entries} already at the broker (sent by an earlier run), "
                    "0 skipped by sizing"]  # fmt: skip


def test_a_holding_the_system_did_not_open_is_never_sold(prefect_harness, data_dir):
    from openbell.flows.trading_day import trading_day

    day = date(2025, 3, 5)
    market = wiring.market_for(RunOptions().settings())
    symbol = sorted(market.opening_prints(day)["symbol"])[0]
    store = wiring.store_for(RunOptions().settings())
    store.insert("paper_holdings", [{"symbol": symbol, "qty": 250, "avg_price": 10}])

    trading_day(trade_date=day, symbols=[symbol])

    sold = store.query("SELECT sum(qty) FROM paper_fills WHERE symbol = ? AND side = 'sell'", [symbol])[0][0]
    bought = store.query("SELECT sum(qty) FROM paper_fills WHERE symbol = ? AND side = 'buy'", [symbol])[0][0]
    held = store.query(
        "SELECT h.qty + coalesce(sum(CASE f.side WHEN 'buy' THEN f.qty ELSE -f.qty END), 0) "
        "FROM paper_holdings h LEFT JOIN paper_fills f USING (symbol) WHERE h.symbol = ? GROUP BY h.qty",
        [symbol],
    )[0][0]
    assert bought > 0
    assert sold == bought
    assert held == 250


def test_moo_orders_are_not_sent_after_the_cutoff(prefect_harness, data_dir, monkeypatch):
    from openbell.flows.place_moo_orders import place_moo_orders
    from openbell.flows.rank_candidates import rank_candidates

    day = date(2025, 3, 4)
    symbol = sorted(wiring.market_for(RunOptions().settings()).opening_prints(day)["symbol"])[0]
    rank_candidates(day, symbols=[symbol])
    monkeypatch.setenv("OPENBELL_SCHEDULE__MOO_TIME", "09:29")  # a run that starts late, after the 09:28 cutoff
    monkeypatch.setenv("OPENBELL_SCHEDULE__MOO_CUTOFF", "09:30")  # valid settings; the broker's 09:28 still applies

    sent = place_moo_orders(day)

    ((orders,),) = _store(data_dir).query("SELECT count(*) FROM paper_orders")
    assert sent == 0
    assert orders == 0


def test_replaying_the_same_day_twice_keeps_one_copy_of_every_row(prefect_harness, data_dir):
    from openbell.flows.trading_day import trading_day

    trading_day(trade_date=date(2025, 3, 3))
    store = _store(data_dir)
    before = {t: store.query(f"SELECT count(*) FROM {t}")[0][0] for t in DAY_TABLES}
    trading_day(trade_date=date(2025, 3, 3))
    after = {t: store.query(f"SELECT count(*) FROM {t}")[0][0] for t in DAY_TABLES}
    assert after == before
    assert before["trades"] > 0
