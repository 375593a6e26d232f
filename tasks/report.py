"""The end-of-day report task: round trips and the day's P&L from the recorded fills."""

from __future__ import annotations

from decimal import Decimal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from openbell import runtime as wiring
from openbell.core.pnl import DailyPnl, round_trips, summarize_day
from openbell.core.types import ClientOrderId, Fill, Purpose, Side, Symbol, Trade, client_order_id
from openbell.report import render_markdown, render_report
from tasks.artifacts import publish_markdown
from tasks.intraday import OFF_SCHEDULE
from tasks.runs import RunContext


@task(cache_policy=NO_CACHE)
def build_report(run: RunContext) -> str:
    """Write `trades` and `daily_pnl` for the day and return the report as text."""
    day, log = run.trade_date, get_run_logger()
    when = wiring.phases(day, run.settings)
    now = wiring.clock_for(run.mode, when.report).now()
    if now < when.report - OFF_SCHEDULE:
        log.info("the report is due at %s today; nothing to do at %s", f"{when.report:%H:%M}", f"{now:%H:%M}")
        return ""
    store = wiring.store_for(run.settings)
    purposes = {
        ClientOrderId(cid): Purpose(p)
        for cid, p in store.query("SELECT client_order_id, purpose FROM orders WHERE trade_date = ?", [day])
    }
    fills = [
        Fill(fid, ClientOrderId(cid), Symbol(sym), Side(side), int(qty), Decimal(price), Decimal(comm), ts)
        for fid, cid, sym, side, qty, price, comm, ts in store.query(
            "SELECT fill_id, client_order_id, symbol, side, qty, price, commission, ts FROM fills "
            "WHERE trade_date = ? ORDER BY ts, fill_id",
            [day],
        )
    ]
    trades = round_trips(day, fills, purposes)
    ((unfilled,),) = store.query(
        "SELECT count(*) FROM orders WHERE trade_date = ? AND purpose = 'entry' AND status IN ('expired', 'rejected')",
        [day],
    )
    ((skipped,),) = store.query("SELECT count(*) FROM sizing WHERE trade_date = ? AND shares = 0", [day])
    summary = summarize_day(day, trades, int(unfilled), int(skipped))
    store.replace("trades", [_trade_row(t) for t in trades], where={"trade_date": day})
    store.replace("daily_pnl", [_summary_row(summary, run.run_id)], where={"trade_date": day})
    text = render_report(summary, trades)
    log.info("end-of-day report for %s\n%s", day, text)
    publish_markdown("eod-report", render_markdown(summary, trades), f"End-of-day report for {day}")
    return text


def _trade_row(t: Trade) -> dict:
    entry_id = client_order_id(t.trade_date, t.symbol, Purpose.ENTRY)
    exit_id = client_order_id(t.trade_date, t.symbol, Purpose(t.exit_reason.value))
    return {
        "trade_date": t.trade_date,
        "symbol": t.symbol,
        "shares": t.shares,
        "entry_ts": t.entry_ts,
        "entry_price": t.entry_price,
        "exit_ts": t.exit_ts,
        "exit_price": t.exit_price,
        "exit_reason": t.exit_reason.value,
        "commission": t.commission,
        "pnl": t.pnl,
        "return_pct": t.return_pct,
        "entry_order_id": entry_id,
        "exit_order_id": exit_id,
    }


def _summary_row(s: DailyPnl, run_id: str) -> dict:
    return {
        "trade_date": s.trade_date,
        "trades": s.trades,
        "wins": s.wins,
        "losses": s.losses,
        "win_rate": s.win_rate,
        "gross_pnl": s.gross_pnl,
        "commission": s.commission,
        "net_pnl": s.net_pnl,
        "unfilled": s.unfilled,
        "skipped": s.skipped,
        "run_id": run_id,
    }
