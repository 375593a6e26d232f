"""The day's records by name: what the tasks and the CLI read from the store and write to it.

Each function takes the `Store` first and holds the one statement it needs, so a task reads as
load, decide, persist and never spells out SQL. The broker-facing records (orders, fills, risk
verdicts) are kept by `openbell.store.ledger`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import pandas as pd

from openbell.core.pnl import DailyPnl
from openbell.core.reconcile import TRADE_COLUMNS
from openbell.core.sizing import PositionSize
from openbell.core.types import ClientOrderId, Fill, Purpose, Side, Symbol, Trade, client_order_id
from openbell.store.db import Store


@dataclass(frozen=True, slots=True)
class RankingDecision:
    """Which ranker's picks trade on a day, which one was asked for, and why they differ."""

    requested: str
    ranker: str
    fallback_reason: str | None


@dataclass(frozen=True, slots=True)
class RankerVerdict:
    """The learning loop's verdict on one ranker for a day."""

    ranker: str
    state: str
    previous_state: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class RiskEventLine:
    """One of the day's risk events, as the report lists it."""

    ts: datetime
    rule: str
    action: str
    message: str


# Runs


def start_run(
    store: Store, run_id: str, flow: str, day: date, mode: str, parameters: str, closed: str | None, now: datetime
) -> None:
    """Record a run of `flow` for `day` as running, or as done at once when the exchange is `closed`."""
    store.upsert("runs", [{
        "run_id": run_id, "flow": flow, "trade_date": day, "mode": mode, "parameters": parameters, "started_at": now,
        "status": "closed" if closed else "running", "finished_at": now if closed else None,
        "message": f"market closed: {closed}" if closed else None,
    }])  # fmt: skip


def mark_crashed(store: Store, flow: str, day: date, mode: str, by: str, now: datetime) -> list[str]:
    """Mark the runs of `flow` on `day` still `running` as crashed, noticed by run `by` at `now`; returns their ids.

    A run that is still running when the next run of its phase and date starts died without finishing
    (killed, or its machine went down): nothing else would ever end it.
    """
    stale = [r for (r,) in store.query(
        "SELECT run_id FROM runs WHERE flow = ? AND trade_date = ? AND mode = ? AND status = 'running' AND run_id <> ?",
        [flow, day, mode, by],
    )]  # fmt: skip
    if stale:
        store.execute(
            "UPDATE runs SET status = 'crashed', finished_at = ?, message = ? WHERE run_id IN (SELECT unnest(?))",
            [now, f"crashed: still running when run {by} of the same phase and date started at {now:%H:%M:%S}", stale],
        )
    return stale


def finish_run(store: Store, run_id: str, message: str, now: datetime) -> None:
    """Record run `run_id` as completed at `now`, with its closing `message`."""
    store.execute(
        "UPDATE runs SET finished_at = ?, status = 'completed', message = ? WHERE run_id = ?", [now, message, run_id]
    )


# Scan and ranking


def candidates(store: Store, day: date) -> pd.DataFrame:
    """The day's scanned symbols with their features and the scan's verdict on each."""
    return store.query_df("SELECT * FROM candidates WHERE trade_date = ?", [day])


def selected_symbols(store: Store, day: date) -> list[Symbol]:
    """The day's picks, best rank first."""
    return [
        Symbol(s)
        for (s,) in store.query("SELECT symbol FROM rankings WHERE trade_date = ? AND selected ORDER BY rank", [day])
    ]


def ranking_decision(store: Store, day: date) -> RankingDecision | None:
    """Which ranker's picks trade on `day` and why; None when the day was not ranked."""
    rows = store.query("SELECT requested, ranker, fallback_reason FROM ranking_decisions WHERE trade_date = ?", [day])
    return RankingDecision(*rows[0]) if rows else None


def ranker_scores(store: Store, day: date) -> pd.DataFrame:
    """Every ranker's score for each of the day's candidates (ranker, symbol, score)."""
    return store.query_df("SELECT ranker, symbol, score FROM ranker_scores WHERE trade_date = ?", [day])


def write_ranking_quality(store: Store, day: date, quality: pd.DataFrame, run_id: str) -> None:
    """Replace the day's `ranking_quality` with each ranker's rank correlation per horizon."""
    store.replace("ranking_quality", quality.assign(trade_date=day, run_id=run_id), where={"trade_date": day})


def ranker_verdicts(store: Store, day: date) -> list[RankerVerdict]:
    """The learning loop's verdict on each ranker for `day`, changes first."""
    rows = store.query(
        "SELECT ranker, state, previous_state, reason FROM ranker_states WHERE trade_date = ? "
        "ORDER BY state = previous_state, ranker",
        [day],
    )
    return [RankerVerdict(*row) for row in rows]


# Sizing, orders and fills


def write_sizing(store: Store, day: date, sizes: Sequence[PositionSize], run_id: str) -> None:
    """Replace the day's `sizing` with `sizes`, the skipped ones with their reason."""
    store.replace("sizing", [
        {"trade_date": day, "symbol": s.symbol, "ref_price": s.ref_price, "shares": s.shares, "notional": s.notional,
         "skipped_reason": s.skipped_reason, "run_id": run_id}
        for s in sizes
    ], where={"trade_date": day})  # fmt: skip


def skipped_picks(store: Store, day: date) -> int:
    """How many of the day's picks sizing gave no shares."""
    ((n,),) = store.query("SELECT count(*) FROM sizing WHERE trade_date = ? AND shares = 0", [day])
    return int(n)


def order_purposes(store: Store, day: date) -> dict[ClientOrderId, Purpose]:
    """What each of the day's recorded orders was for, by client order id."""
    rows = store.query("SELECT client_order_id, purpose FROM orders WHERE trade_date = ?", [day])
    return {ClientOrderId(cid): Purpose(p) for cid, p in rows}


def unfilled_entries(store: Store, day: date) -> int:
    """How many of the day's entry orders expired or were rejected."""
    ((n,),) = store.query(
        "SELECT count(*) FROM orders WHERE trade_date = ? AND purpose = 'entry' AND status IN ('expired', 'rejected')",
        [day],
    )
    return int(n)


def fills(store: Store, day: date) -> list[Fill]:
    """The day's recorded fills, in time order."""
    rows = store.query(
        "SELECT fill_id, client_order_id, symbol, side, qty, price, commission, ts FROM fills "
        "WHERE trade_date = ? ORDER BY ts, fill_id",
        [day],
    )
    return [
        Fill(fid, ClientOrderId(cid), Symbol(sym), Side(side), int(qty), Decimal(price), Decimal(comm), ts)
        for fid, cid, sym, side, qty, price, comm, ts in rows
    ]


# The day's results


def write_trades(store: Store, day: date, trades: Sequence[Trade]) -> None:
    """Replace the day's `trades` with its round trips."""
    store.replace("trades", [_trade_row(t) for t in trades], where={"trade_date": day})


def write_daily_pnl(store: Store, summary: DailyPnl, run_id: str) -> None:
    """Replace the day's row of `daily_pnl` with `summary`."""
    store.replace("daily_pnl", [_summary_row(summary, run_id)], where={"trade_date": summary.trade_date})


def live_and_replayed_trades(store: Store, day: date) -> dict[str, pd.DataFrame]:
    """The day's trades in the live book and in the replay book ("live", "replayed"), read at one moment."""
    columns = ", ".join(TRADE_COLUMNS)
    with store.snapshot():  # both books at one moment; read-only in effect (a snapshot refuses writes)
        return {
            book: pd.DataFrame(
                store.query(f"SELECT {columns} FROM {table} WHERE trade_date = ? ORDER BY symbol", [day]),
                columns=list(TRADE_COLUMNS),
            )  # fmt: skip
            for book, table in (("live", "live.trades"), ("replayed", "trades"))
        }


# Risk


def risk_events(store: Store, day: date) -> list[RiskEventLine]:
    """What the risk guards did on `day`, in time order."""
    rows = store.query("SELECT ts, rule, action, message FROM risk_events WHERE trade_date = ? ORDER BY ts, event_id", [day])
    return [RiskEventLine(*row) for row in rows]


def latest_risk_events(store: Store, count: int = 20) -> pd.DataFrame:
    """The latest `count` risk events of any day, newest first, with the time of day as text."""
    return store.query_df(
        "SELECT trade_date, strftime(ts, '%H:%M:%S') AS time, rule, symbol, action, message FROM risk_events "
        "ORDER BY ts DESC LIMIT ?",
        [count],
        read_only=True,
    )


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
