"""The end-of-day report task: round trips and the day's P&L from the recorded fills."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from openbell import runtime as wiring
from openbell.core.pnl import DailyPnl, round_trips, summarize_day
from openbell.core.quality import ranking_quality, realised_returns
from openbell.core.types import ClientOrderId, Fill, Purpose, Side, Symbol, Trade, client_order_id
from openbell.notify import Notifier, daily_summary_message
from openbell.report import RankerQuality, RankingReview, render_markdown, render_report
from openbell.store import Store
from openbell.tasks.artifacts import publish_markdown
from openbell.tasks.intraday import OFF_SCHEDULE
from openbell.tasks.runs import RunContext


@task(cache_policy=NO_CACHE)
def build_report(run: RunContext) -> str:
    """Write `trades` and `daily_pnl` for the day and return the report as text."""
    day, log = run.trade_date, get_run_logger()
    when = wiring.phases(day, run.settings)
    now = wiring.clock_for(run.mode, when.report).now()
    if now < when.report - OFF_SCHEDULE:
        log.info("the report is due at %s today; nothing to do at %s", f"{when.report:%H:%M}", f"{now:%H:%M}")
        return ""
    store = wiring.store_for(run.settings, run.mode)
    with store.batch():  # one connection for the day's reads and writes
        summary, trades, review = _write_day(run, store, when)
        risk = _risk_lines(store, day) + _learning_lines(store, day)
    text = render_report(summary, trades, review, risk)
    log.info(
        "end-of-day report for %s: %d trades, net P&L $%s (the whole report: the eod-report artifact)",
        day, summary.trades, f"{summary.net_pnl:,.2f}",
    )  # fmt: skip
    publish_markdown("eod-report", render_markdown(summary, trades, review, risk), f"End-of-day report for {day}")
    Notifier.from_settings(run.settings).notify(daily_summary_message(**asdict(summary)))
    return text


@task(cache_policy=NO_CACHE)
def housekeep_store(run: RunContext) -> str:
    """After the close: the day's small writes become one Parquet file per table; old snapshots expire.

    Housekeeping never fails the day: an error is logged, and the next close tries again.
    """
    log = get_run_logger()
    try:
        done = wiring.store_for(run.settings, run.mode).housekeep(**run.settings.data.housekeeping())
    except Exception as exc:  # the records are safe either way; say why, and leave it to the next close
        log.warning("store housekeeping skipped: %s", str(exc).splitlines()[0])
        return ""
    log.info("store housekeeping: %s", done)
    return str(done)


def _write_day(run: RunContext, store: Store, when: wiring.Phases) -> tuple[DailyPnl, list[Trade], RankingReview | None]:
    """Round trips and P&L from the day's fills into `trades` and `daily_pnl`, and the ranking review."""
    day = run.trade_date
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
    review = _review_ranking(run, store, when)
    return summary, trades, review


def _learning_lines(store: Store, day) -> list[str]:
    """The learning loop's verdict on each ranker for `day`, changes first."""
    rows = store.query(
        "SELECT ranker, state, previous_state, reason FROM ranker_states WHERE trade_date = ? "
        "ORDER BY state = previous_state, ranker",
        [day],
    )
    return [
        f"learning loop: {ranker} {state}{'' if state == previous else f' (was {previous})'}: {reason}"
        for ranker, state, previous, reason in rows
    ]


def _risk_lines(store: Store, day) -> list[str]:
    """What the risk guards did on `day`, one line each in time order."""
    return [
        f"{ts:%H:%M:%S} {rule} {action}: {message}"
        for ts, rule, action, message in store.query(
            "SELECT ts, rule, action, message FROM risk_events WHERE trade_date = ? ORDER BY ts, event_id", [day]
        )
    ]


def _review_ranking(run: RunContext, store: Store, when: wiring.Phases) -> RankingReview | None:
    """Score every ranker of the day against the candidates' realised returns into `ranking_quality`.

    The review is analysis: when it cannot be made (no minute bars, say), the report says so and
    the P&L above stands.
    """
    day = run.trade_date
    decision = store.query("SELECT requested, ranker, fallback_reason FROM ranking_decisions WHERE trade_date = ?", [day])
    if not decision:
        return None
    ((requested, ranker, fallback_reason),) = decision
    scores = store.query_df("SELECT ranker, symbol, score FROM ranker_scores WHERE trade_date = ?", [day])
    quality: tuple[RankerQuality, ...] = ()
    if not scores.empty:
        try:
            symbols = sorted(scores["symbol"].unique())
            bars = wiring.market_for(run.settings, run.mode).minute_bars(day, symbols)
            table = ranking_quality(scores, realised_returns(bars, when.open, when.close))
        except Exception as exc:  # analysis must not cost the day its report
            get_run_logger().warning("no ranking quality for %s: %s: %s", day, type(exc).__name__, exc)
        else:
            store.replace("ranking_quality", table.assign(trade_date=day, run_id=run.run_id), where={"trade_date": day})
            wide = table.pivot(index="ranker", columns="horizon", values="spearman")
            n = table.groupby("ranker")["n"].max()
            quality = tuple(
                RankerQuality(r, int(n[r]), float(wide.at[r, "open_close"]), float(wide.at[r, "open_high"]))
                for r in wide.index
            )
    return RankingReview(ranker, requested, fallback_reason, quality)


def _trade_row(t: Trade) -> dict:
    entry_id = client_order_id(t.trade_date, t.symbol, Purpose.ENTRY)
    exit_id = t.exit_order_id or client_order_id(t.trade_date, t.symbol, Purpose(t.exit_reason.value))
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
