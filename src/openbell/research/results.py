"""What a backtest, a sweep and a comparison produce: plain frames and numbers, for DuckDB, the terminal and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

# One row per round trip. Prices in dollars (float64 here: analytics), P&L net of commissions.
TRADE_COLUMNS = (
    "trade_date",  # datetime.date
    "symbol",
    "ranker",  # the ranker whose pick it was (gap_x_rvol, ensemble, llm, fixed, a voter's name)
    "shares",  # int
    "entry_ts",  # tz-aware America/New_York
    "entry_price",
    "exit_ts",
    "exit_price",
    "exit_reason",  # "target", "stop" or "eod"
    "commission",
    "pnl",  # dollars, after commissions
    "return_pct",  # (exit / entry - 1) x 100, before commissions
    "mfe_pct",  # best move from the entry while held: (highest high / entry - 1) x 100, >= 0 at the entry bar's open
    "mae_pct",  # worst move from the entry while held: (lowest low / entry - 1) x 100, <= 0
    "open_high_pct",  # the day's move from the opening print to the session's high, x 100 (the "missed move")
)

# One row per session of the range, in date order.
DAILY_COLUMNS = (
    "trade_date",
    "equity",  # dollars at the close, after the day's P&L
    "pnl",  # the day's net P&L, dollars
    "exposure",  # entry notional of the day / equity at the start of the day (0 on a day without trades)
    "drawdown_pct",  # (equity / running peak - 1) x 100, <= 0; the peak includes the starting equity
    "trades",  # int, round trips that day
)


@dataclass(frozen=True)
class BacktestResult:
    """A backtest of one date range: its trades, its days, its metrics, and how it was asked for."""

    run_id: str
    parameters: dict[str, Any]  # JSON-able: range, files, ranker, exits, sizing, costs, starting equity
    starting_equity: float
    trades: pd.DataFrame  # TRADE_COLUMNS
    daily: pd.DataFrame  # DAILY_COLUMNS
    metrics: dict[str, float]  # core.metrics.performance_metrics
    target_reach: pd.DataFrame = field(default_factory=pd.DataFrame)  # level_pct, trades, reached, reached_pct
    notes: tuple[str, ...] = ()  # what the user should know: days without candidates, skipped picks...
