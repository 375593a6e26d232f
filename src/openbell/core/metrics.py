"""A backtest's performance metrics: returns, risk, drawdown and trade statistics from its days and trades.

Daily returns are r_t = equity_t / equity_{t-1} - 1, the first session against the starting
equity; there are as many returns as sessions (N). Annualised figures use `periods_per_year`
sessions a year (252). Percentages are x 100; ratios are plain numbers.

Each key of `performance_metrics` (all floats):

Returns and risk, from the daily equity:
- total_return_pct: (last equity / starting equity - 1) x 100
- cagr_pct: ((last equity / starting equity) ** (1 / years) - 1) x 100, years = N / periods_per_year.
  Years count sessions, not calendar days, like the annualisation of every other metric here and
  like quantstats.stats.cagr does now (older quantstats releases divided calendar days by 365).
  NaN when the final equity is negative.
- volatility_ann_pct: sample standard deviation (ddof=1) of r x sqrt(periods_per_year) x 100
- sharpe: mean(r) / std(r, ddof=1) x sqrt(periods_per_year), risk-free rate 0
- sortino: mean(r) / downside deviation x sqrt(periods_per_year), where the downside deviation is
  sqrt(sum(min(r, 0)^2) / N) over all N sessions, target 0 (Red Rock Capital's definition, the one
  quantstats.stats.sortino uses): days without a loss count as zero downside rather than being dropped.
- calmar: cagr_pct / |max_drawdown_pct|
- max_drawdown_pct: min over sessions of (equity / running peak - 1) x 100, <= 0; the running peak
  starts at the starting equity, so a loss on the first session is a drawdown.
- max_drawdown_sessions: the longest run of consecutive sessions whose equity closed below the
  running peak (sessions under water), until a close at or above the peak or the end of the range.
  0 without a drawdown. A drawdown still open at the end counts the sessions it has lasted so far.
- sessions: N
- exposure_pct: mean over all sessions of the daily exposure (entry notional / start-of-day equity) x 100
- best_day_usd, worst_day_usd: the largest and smallest daily net P&L

Trades, one per round trip (a win has net pnl > 0, a loss pnl < 0; a break-even trade is neither,
but counts in `trades` and in the win rate's denominator):
- trades: the number of round trips
- win_rate_pct: wins / trades x 100
- profit_factor: sum of winning pnl / |sum of losing pnl|; inf with wins and no losses, 0 with
  losses and no wins, NaN with neither (no trades, or only break-even ones)
- expectancy_usd: mean net pnl per trade
- avg_win_usd, avg_loss_usd: mean pnl of the wins, of the losses (avg_loss_usd < 0)
- payoff_ratio: avg_win_usd / |avg_loss_usd|
- trades_target, trades_stop, trades_eod, and trades_<reason> for any other exit reason present

A metric that is undefined is NaN, never a made-up zero: volatility, Sharpe and Sortino need two
sessions; Sharpe needs some spread in the returns, Sortino a losing session, Calmar a drawdown;
the trade statistics need trades (avg_win_usd wins, avg_loss_usd losses, payoff_ratio both).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PERIODS_PER_YEAR = 252
EXIT_REASONS = ("target", "stop", "eod")  # always counted, even when none occurred

# Daily returns and drawdowns are fractions of order 1e-2; float error on an equity of 1e5 built from
# a sum of P&L is of order 1e-16. Below this, a spread or a drawdown is rounding, not risk: a flat
# equity must give a NaN Sharpe, and an equity back at its peak through a float sum is recovered.
_ROUNDING = 1e-12

METRIC_ORDER = (
    "total_return_pct",
    "cagr_pct",
    "volatility_ann_pct",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown_pct",
    "max_drawdown_sessions",
    "sessions",
    "trades",
    "win_rate_pct",
    "profit_factor",
    "expectancy_usd",
    "payoff_ratio",
    "avg_win_usd",
    "avg_loss_usd",
    "exposure_pct",
    "best_day_usd",
    "worst_day_usd",
    *(f"trades_{reason}" for reason in EXIT_REASONS),
)

METRIC_LABELS = {
    "total_return_pct": "Total return %",
    "cagr_pct": "CAGR %",
    "volatility_ann_pct": "Volatility (ann.) %",
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "calmar": "Calmar",
    "max_drawdown_pct": "Max drawdown %",
    "max_drawdown_sessions": "Longest drawdown (sessions)",
    "sessions": "Sessions",
    "trades": "Trades",
    "win_rate_pct": "Win rate %",
    "profit_factor": "Profit factor",
    "expectancy_usd": "Expectancy $",
    "payoff_ratio": "Payoff ratio",
    "avg_win_usd": "Avg win $",
    "avg_loss_usd": "Avg loss $",
    "exposure_pct": "Exposure %",
    "best_day_usd": "Best day $",
    "worst_day_usd": "Worst day $",
    "trades_target": "Exits at target",
    "trades_stop": "Exits at stop",
    "trades_eod": "Exits at end of day",
}

_DAILY_NEEDS = ("trade_date", "equity", "pnl", "exposure")
_TRADES_NEED = ("pnl", "exit_reason")
_NAN = float("nan")


def performance_metrics(
    daily: pd.DataFrame, trades: pd.DataFrame, starting_equity: float, *, periods_per_year: int = PERIODS_PER_YEAR
) -> dict[str, float]:
    """The metrics of one backtest, keyed as in METRIC_ORDER (formulas in the module docstring).

    The dict lists METRIC_ORDER's keys in that order, then a `trades_<reason>` for each other exit
    reason present, sorted by name.

    Args:
        daily: one row per session in date order: trade_date, equity, pnl, exposure (DAILY_COLUMNS).
        trades: one row per round trip: pnl, exit_reason (TRADE_COLUMNS); may be empty.
        starting_equity: dollars before the first session, > 0.
        periods_per_year: sessions in a year, for annualising.

    Raises:
        ValueError: `daily` is empty, lacks a column or is out of date order, or starting_equity <= 0.
    """
    _check_inputs(daily, trades, starting_equity, periods_per_year)
    equity = daily["equity"].to_numpy(dtype=float)
    returns = _daily_returns(equity, starting_equity)
    drawdown = drawdown_pct(daily["equity"], starting_equity).to_numpy()
    pnl = daily["pnl"].to_numpy(dtype=float)

    growth = equity[-1] / starting_equity
    years = len(equity) / periods_per_year
    cagr_pct = (growth ** (1 / years) - 1) * 100 if growth >= 0 else _NAN
    max_drawdown = float(drawdown.min())

    metrics = {
        "total_return_pct": (growth - 1) * 100,
        "cagr_pct": cagr_pct,
        **_risk_ratios(returns, periods_per_year),
        "calmar": cagr_pct / abs(max_drawdown) if max_drawdown < -_ROUNDING * 100 else _NAN,
        "max_drawdown_pct": max_drawdown,
        "max_drawdown_sessions": float(_longest_run(drawdown < -_ROUNDING * 100)),
        "sessions": float(len(equity)),
        **_trade_statistics(trades),
        "exposure_pct": float(daily["exposure"].to_numpy(dtype=float).mean() * 100),
        "best_day_usd": float(pnl.max()),
        "worst_day_usd": float(pnl.min()),
        **_exits_by_reason(trades),
    }
    ordered = {key: float(metrics[key]) for key in METRIC_ORDER}
    return ordered | {key: float(value) for key, value in sorted(metrics.items()) if key not in ordered}


def drawdown_pct(equity: pd.Series, starting_equity: float) -> pd.Series:
    """(equity / running peak - 1) x 100 at each close, <= 0; the running peak starts at `starting_equity`.

    Keeps `equity`'s index, so it can be a column of the daily table.
    """
    values = equity.to_numpy(dtype=float)
    peak = np.maximum(np.maximum.accumulate(values), starting_equity) if len(values) else values
    return pd.Series((values / peak - 1) * 100, index=equity.index, name="drawdown_pct")


def _check_inputs(daily: pd.DataFrame, trades: pd.DataFrame, starting_equity: float, periods_per_year: int) -> None:
    if daily.empty:
        raise ValueError("daily has no sessions: metrics need at least one session's equity")
    missing = [c for c in _DAILY_NEEDS if c not in daily.columns]
    if missing:
        raise ValueError(f"daily lacks the columns {missing}: pass the backtest's daily table (DAILY_COLUMNS)")
    dates = pd.Series(daily["trade_date"].to_numpy())
    if not (dates.is_monotonic_increasing and dates.is_unique):
        raise ValueError("daily must have one row per session in date order: sort it by trade_date")
    missing = [c for c in _TRADES_NEED if c not in trades.columns]
    if missing and not trades.empty:
        raise ValueError(f"trades lacks the columns {missing}: pass the backtest's trades table (TRADE_COLUMNS)")
    if not starting_equity > 0:
        raise ValueError(f"starting_equity must be positive dollars, got {starting_equity}")
    if periods_per_year < 1:
        raise ValueError(f"periods_per_year must be a positive number of sessions, got {periods_per_year}")


def _daily_returns(equity: np.ndarray, starting_equity: float) -> np.ndarray:
    previous = np.concatenate(([starting_equity], equity[:-1]))
    return equity / previous - 1


def _risk_ratios(returns: np.ndarray, periods_per_year: int) -> dict[str, float]:
    if len(returns) < 2:  # one return has no spread; a ratio of it to itself says nothing
        return {"volatility_ann_pct": _NAN, "sharpe": _NAN, "sortino": _NAN}
    scale = np.sqrt(periods_per_year)
    mean = returns.mean()
    std = returns.std(ddof=1)
    downside = np.sqrt(np.square(np.minimum(returns, 0)).sum() / len(returns))
    return {
        "volatility_ann_pct": std * scale * 100,
        "sharpe": mean / std * scale if std > _ROUNDING else _NAN,
        "sortino": mean / downside * scale if downside > _ROUNDING else _NAN,
    }


def _longest_run(flags: np.ndarray) -> int:
    """The length of the longest run of consecutive True values (0 when there is none)."""
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))  # starts and ends of runs, alternating
    return int((edges[1::2] - edges[0::2]).max()) if len(edges) else 0


def _trade_statistics(trades: pd.DataFrame) -> dict[str, float]:
    pnl = trades["pnl"].to_numpy(dtype=float) if not trades.empty else np.empty(0)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_win, gross_loss = wins.sum(), -losses.sum()
    avg_win = wins.mean() if len(wins) else _NAN
    avg_loss = losses.mean() if len(losses) else _NAN
    if gross_loss > 0:
        profit_factor = gross_win / gross_loss
    else:
        profit_factor = np.inf if gross_win > 0 else _NAN
    return {
        "trades": float(len(pnl)),
        "win_rate_pct": len(wins) / len(pnl) * 100 if len(pnl) else _NAN,
        "profit_factor": profit_factor,
        "expectancy_usd": pnl.mean() if len(pnl) else _NAN,
        "payoff_ratio": avg_win / abs(avg_loss),
        "avg_win_usd": avg_win,
        "avg_loss_usd": avg_loss,
    }


def _exits_by_reason(trades: pd.DataFrame) -> dict[str, float]:
    counts = dict.fromkeys(EXIT_REASONS, 0)
    if not trades.empty:
        counts |= trades["exit_reason"].astype(str).value_counts().to_dict()
    return {f"trades_{reason}": float(n) for reason, n in counts.items()}


GRID_METRICS = (
    "total_return_pct",
    "cagr_pct",
    "volatility_ann_pct",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown_pct",
    "win_rate_pct",
    "profit_factor",
    "expectancy_usd",
    "trades",
)
"""What `grid_metrics` gives for each combination of a sweep: the keys of `performance_metrics` a grid is ranked by."""


def grid_metrics(
    daily_pnl: np.ndarray,
    trade_pnl: np.ndarray,
    starting_equity: float,
    *,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> dict[str, np.ndarray]:
    """GRID_METRICS for many backtests at once, one row each, by the formulas of `performance_metrics`.

    Args:
        daily_pnl: (n_backtests, n_sessions) net P&L of each session, dollars.
        trade_pnl: (n_backtests, n_trades) net P&L of each round trip, dollars (the same trades, other exits).
        starting_equity: dollars before the first session, > 0.
    Returns each key as an array of n_backtests floats, equal to what `performance_metrics` gives each row.
    """
    daily_pnl = np.atleast_2d(np.asarray(daily_pnl, dtype=float))
    trade_pnl = np.atleast_2d(np.asarray(trade_pnl, dtype=float))
    if daily_pnl.shape[1] == 0:
        raise ValueError("daily_pnl has no sessions: metrics need at least one session's equity")
    if not starting_equity > 0:
        raise ValueError(f"starting_equity must be positive dollars, got {starting_equity}")
    n, sessions = daily_pnl.shape
    equity = starting_equity + np.cumsum(daily_pnl, axis=1)
    previous = np.concatenate((np.full((n, 1), float(starting_equity)), equity[:, :-1]), axis=1)
    returns = equity / previous - 1
    peak = np.maximum(np.maximum.accumulate(equity, axis=1), starting_equity)
    max_drawdown = ((equity / peak - 1) * 100).min(axis=1)

    growth = equity[:, -1] / starting_equity
    with np.errstate(invalid="ignore", divide="ignore"):
        cagr = np.where(growth >= 0, (np.abs(growth) ** (periods_per_year / sessions) - 1) * 100, np.nan)
        if sessions >= 2:
            scale = np.sqrt(periods_per_year)
            mean, std = returns.mean(axis=1), returns.std(axis=1, ddof=1)
            downside = np.sqrt(np.square(np.minimum(returns, 0)).sum(axis=1) / sessions)
            volatility = std * scale * 100
            sharpe = np.where(std > _ROUNDING, mean / std * scale, np.nan)
            sortino = np.where(downside > _ROUNDING, mean / downside * scale, np.nan)
        else:
            volatility = sharpe = sortino = np.full(n, np.nan)
        calmar = np.where(max_drawdown < -_ROUNDING * 100, cagr / np.abs(max_drawdown), np.nan)

        trades = trade_pnl.shape[1]
        gross_win = np.where(trade_pnl > 0, trade_pnl, 0).sum(axis=1)
        gross_loss = -np.where(trade_pnl < 0, trade_pnl, 0).sum(axis=1)
        profit_factor = np.where(gross_loss > 0, gross_win / gross_loss, np.where(gross_win > 0, np.inf, np.nan))
        win_rate = (trade_pnl > 0).sum(axis=1) / trades * 100 if trades else np.full(n, np.nan)
        expectancy = trade_pnl.mean(axis=1) if trades else np.full(n, np.nan)
    return {
        "total_return_pct": (growth - 1) * 100,
        "cagr_pct": cagr,
        "volatility_ann_pct": volatility,
        "sharpe": sharpe,
        "sortino": sortino,
        "calmar": calmar,
        "max_drawdown_pct": max_drawdown,
        "win_rate_pct": win_rate,
        "profit_factor": profit_factor,
        "expectancy_usd": expectancy,
        "trades": np.full(n, float(trades)),
    }
