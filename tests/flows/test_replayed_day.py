"""A recorded day (2018-03-01) replayed through every flow, checked against the fill model."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import numpy as np
import pytest

from openbell.config import RunOptions
from openbell.core.backtest import REASONS, SessionBars, replay_sessions
from openbell.core.prices import to_units, units_to_price
from openbell.store import DAY_TABLES, Store
from openbell.venues.replay import ParquetReplaySource

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

DAY = date(2018, 3, 1)


@pytest.fixture(scope="module")
def replayed(prefect_harness, shared_data, tmp_path_factory):
    """2018-03-01 replayed once with every symbol that traded that day as a fixed list."""
    from openbell.flows.trading_day import trading_day

    minute, daily = shared_data
    db = tmp_path_factory.mktemp("day") / "openbell.ducklake"
    # $10,000 for each of the day's ~280 symbols: an account that can pay for them all
    options = RunOptions(db_path=str(db), minute_bars=str(minute), daily_bars=str(daily), starting_equity=Decimal(5_000_000))
    symbols = sorted(ParquetReplaySource(minute, daily).minute_bars(DAY)["symbol"].unique())
    report = trading_day(trade_date=DAY, symbols=symbols, options=options)
    return Store(db), options, symbols, report


def _counts(store: Store) -> dict[str, int]:
    return {t: store.query(f"SELECT count(*) FROM {t}")[0][0] for t in DAY_TABLES}


def test_every_client_order_id_is_unique_and_deterministic(replayed):
    store, *_ = replayed
    ((total, distinct),) = store.query("SELECT count(*), count(DISTINCT client_order_id) FROM paper_orders")
    ((unexpected,),) = store.query(
        "SELECT count(*) FROM orders WHERE NOT regexp_matches(client_order_id, '^ob-20180301-[A-Z.]+-(entry|target|stop|eod)$')"
    )
    assert total == distinct > 0
    assert unexpected == 0


def test_no_position_is_left_after_liquidation(replayed):
    store, *_ = replayed
    left = store.query(
        "SELECT symbol, sum(CASE side WHEN 'buy' THEN qty ELSE -qty END) AS q FROM fills GROUP BY symbol HAVING q <> 0"
    )
    ((working,),) = store.query("SELECT count(*) FROM paper_orders WHERE status = 'new'")
    assert left == []
    assert working == 0


def test_trade_pnl_equals_fills_minus_commissions(replayed):
    store, *_ = replayed
    rows = store.query(
        """
        SELECT t.symbol, t.pnl,
               sum(CASE f.side WHEN 'sell' THEN f.qty * f.price ELSE -f.qty * f.price END) - sum(f.commission)
        FROM trades t JOIN fills f USING (trade_date, symbol) GROUP BY t.symbol, t.pnl
        """
    )
    assert rows
    assert all(pnl == from_fills for _, pnl, from_fills in rows)
    ((net,),) = store.query("SELECT net_pnl FROM daily_pnl WHERE trade_date = ?", [DAY])
    assert net == sum(pnl for _, pnl, _ in rows)


def test_trades_follow_the_fill_model_exactly(replayed, shared_data):
    """Every trade written by the flows equals the vectorised replay engine on the same bars."""
    store, _, symbols, _ = replayed
    bars = ParquetReplaySource(*shared_data).minute_bars(DAY, symbols)
    shares = dict(store.query("SELECT symbol, shares FROM sizing WHERE trade_date = ?", [DAY]))
    sessions = sorted(shares)
    bars = bars[bars["symbol"].isin(sessions)].sort_values(["symbol", "ts"])
    starts = np.searchsorted(bars["symbol"].to_numpy(), sessions)
    engine = replay_sessions(
        SessionBars(
            starts=starts.astype(np.int64),
            minute=(bars["ts"].dt.hour * 60 + bars["ts"].dt.minute).to_numpy(np.int32),
            open=to_units(bars["open"].to_numpy()),
            high=to_units(bars["high"].to_numpy()),
            low=to_units(bars["low"].to_numpy()),
            close=to_units(bars["close"].to_numpy()),
        ),
        np.array([shares[s] for s in sessions]),
        liquidation_minute=15 * 60 + 45,
    )
    expected = {
        s: (
            units_to_price(engine.entry_price[i]),
            units_to_price(engine.exit_price[i]),
            REASONS[int(engine.exit_code[i])],
            units_to_price(engine.pnl[i]),
        )
        for i, s in enumerate(sessions)
        if engine.filled[i]
    }
    written = {
        s: (Decimal(entry), Decimal(exit_), reason, Decimal(pnl))
        for s, entry, exit_, reason, pnl in store.query(
            "SELECT symbol, entry_price, exit_price, exit_reason, pnl FROM trades WHERE trade_date = ?", [DAY]
        )
    }
    assert len(written) > 150  # most of the day's symbols had an opening print
    assert written == expected


def test_every_pick_is_traded_unfilled_or_skipped_with_a_reason(replayed):
    store, _, symbols, _ = replayed
    ((unfilled,),) = store.query("SELECT count(*) FROM orders WHERE purpose = 'entry' AND status = 'expired'")
    ((skipped,),) = store.query("SELECT count(*) FROM sizing WHERE shares = 0 AND skipped_reason IS NOT NULL")
    reported = store.query("SELECT unfilled, skipped FROM daily_pnl WHERE trade_date = ?", [DAY])
    ((traded,),) = store.query("SELECT count(*) FROM trades")
    assert unfilled > 0  # symbols without an opening print
    assert skipped > 0  # symbols with no reference price at all (delisted names missing from the daily file)
    assert reported == [(unfilled, skipped)]
    assert traded + unfilled + skipped == len(symbols)


def test_rerunning_the_day_replaces_its_rows(replayed, prefect_harness):
    from openbell.flows.trading_day import trading_day

    store, options, symbols, report = replayed
    before = _counts(store)
    again = trading_day(trade_date=DAY, symbols=symbols, options=options)
    assert _counts(store) == before
    assert again == report


def test_rerunning_without_replacing_sends_no_order_twice(replayed, prefect_harness):
    from openbell.flows.trading_day import trading_day

    store, options, symbols, report = replayed
    before = _counts(store)
    again = trading_day(trade_date=DAY, symbols=symbols, options=options, replace_existing=False)
    assert _counts(store) == before
    assert again == report
