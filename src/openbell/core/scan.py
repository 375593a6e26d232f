"""The pre-market scan: gap, ATR, volume features per symbol, a data-quality gate and filters.

Features, for a trade date D with previous session P:
- prior_close: P's close (the caller may pass the last minute bar's close of P, which is
  unadjusted like the minute bars, instead of the split-adjusted daily close)
- open_price, open_volume: the indication before the open (in replay: the opening auction print)
- gap_pct = (open_price / prior_close - 1) x 100
- atr14: mean true range of the 14 sessions up to P; atr_pct = atr14 / prior_close x 100
- avg_volume_20, avg_dollar_volume_20: mean volume and close x volume of the 20 sessions up to P
- rel_volume = open_volume / (avg_volume_20 / 390): the opening's volume in average minutes
- ret_5d_pct, ret_20d_pct = (close of P / close 5 or 20 sessions earlier - 1) x 100, daily closes
- prior_range_pct = (high - low) / close x 100 of P's daily bar
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

HISTORY_SESSIONS = 20  # avg volume needs 20 sessions; ATR(14) needs 15
ATR_SESSIONS = 14
MINUTES_PER_SESSION = 390

FEATURE_COLUMNS = [
    "symbol",
    "prior_close",
    "open_price",
    "gap_pct",
    "atr14",
    "atr_pct",
    "avg_volume_20",
    "rel_volume",
    "avg_dollar_volume_20",
    "ret_5d_pct",
    "ret_20d_pct",
    "prior_range_pct",
    "passed",
    "reject_reason",
]


@dataclass(frozen=True, slots=True)
class ScanFilters:
    """Which symbols are candidates. Gaps are up-gaps: openbell enters long at the open."""

    min_price: float = 2.0
    max_price: float = 1_000.0
    min_gap_pct: float = 2.0
    max_gap_pct: float = 50.0  # larger gaps are usually corporate actions or bad prints
    min_avg_dollar_volume: float = 2_000_000.0
    min_rel_volume: float = 0.0


def scan_features(
    daily: pd.DataFrame,
    opening: pd.DataFrame,
    prior_session: date,
    prior_close_override: pd.Series | None = None,
) -> pd.DataFrame:
    """Features and data-quality verdicts for every symbol with an opening indication.

    Args:
        daily: daily bars (symbol, date, open, high, low, close, volume) up to `prior_session`.
        opening: (symbol, open, volume) indications for the trade date.
        prior_session: the session before the trade date.
        prior_close_override: prior closes by symbol that take precedence over the daily close.
    Returns one row per symbol of `opening` with FEATURE_COLUMNS; `passed` is False with a
    `reject_reason` where the data cannot be trusted (filters are applied by `apply_filters`).
    """
    daily = daily.loc[daily["symbol"].isin(opening["symbol"])]  # a symbol without an opening print is not scanned
    stats = _history_stats(_recent_history(daily, prior_session))
    out = opening[["symbol", "open", "volume"]].rename(columns={"open": "open_price", "volume": "open_volume"})
    out = out.merge(stats, left_on="symbol", right_index=True, how="left")
    out["prior_close"] = out["daily_close"]
    if prior_close_override is not None:
        override = out["symbol"].map(prior_close_override)
        out["prior_close"] = override.where(override.notna(), out["prior_close"])
    out["gap_pct"] = (out["open_price"] / out["prior_close"] - 1) * 100
    out["atr_pct"] = out["atr14"] / out["prior_close"] * 100
    out["rel_volume"] = out["open_volume"] / (out["avg_volume_20"] / MINUTES_PER_SESSION)
    out["reject_reason"] = _quality_reasons(out, prior_session)
    out["passed"] = out["reject_reason"].isna()
    return out[FEATURE_COLUMNS].sort_values("symbol").reset_index(drop=True)


def _recent_history(daily: pd.DataFrame, prior_session: date) -> pd.DataFrame:
    """The last 21 daily bars of each symbol up to `prior_session`, with the per-bar features.

    21 bars give 20 true ranges and the 20-session return; `day` is the date as datetime64, on
    which pandas aggregates in compiled code (on `date` objects it calls Python once per symbol).
    """
    days = pd.to_datetime(daily["date"]).to_numpy()
    recent = daily.assign(day=days).loc[days <= np.datetime64(prior_session)].sort_values(["symbol", "day"])
    history = recent.groupby("symbol", sort=False).tail(HISTORY_SESSIONS + 1)
    by_symbol = history.groupby("symbol", sort=False)["close"]
    prev_close = by_symbol.shift(1)
    high, low, close = history["high"], history["low"], history["close"]
    prices = history[["open", "high", "low", "close"]]
    return history.assign(
        true_range=np.maximum(high - low, np.maximum((high - prev_close).abs(), (low - prev_close).abs())),
        dollar_volume=close * history["volume"],
        ret_5d_pct=(close / by_symbol.shift(5) - 1) * 100,
        ret_20d_pct=(close / by_symbol.shift(20) - 1) * 100,
        prior_range_pct=(high - low) / close * 100,
        invalid=prices.isna().any(axis=1) | (prices <= 0).any(axis=1) | (high < low) | (history["volume"] < 0),
    )


def _history_stats(history: pd.DataFrame) -> pd.DataFrame:
    """Per symbol, over its last 20 sessions: counts, averages, the latest values and ATR(14)."""
    last20 = history.groupby("symbol", sort=False).tail(HISTORY_SESSIONS)
    stats = last20.groupby("symbol").agg(
        sessions=("close", "size"),
        last_date=("day", "max"),
        daily_close=("close", "last"),  # like every "last" here: the latest non-missing value
        avg_volume_20=("volume", "mean"),
        avg_dollar_volume_20=("dollar_volume", "mean"),
        ret_5d_pct=("ret_5d_pct", "last"),
        ret_20d_pct=("ret_20d_pct", "last"),
        prior_range_pct=("prior_range_pct", "last"),
        bad_bar=("invalid", "any"),
    )
    stats["atr14"] = last20.groupby("symbol", sort=False).tail(ATR_SESSIONS).groupby("symbol")["true_range"].mean()
    return stats


def _quality_reasons(rows: pd.DataFrame, prior_session: date) -> pd.Series:
    """The first data-quality problem of each row, or NaN when the row can be trusted."""
    checks = [
        (rows["sessions"].isna(), "no daily history"),
        (rows["sessions"] < HISTORY_SESSIONS, "fewer than 20 sessions of daily history"),
        (rows["last_date"] != pd.Timestamp(prior_session), f"no daily bar for the previous session {prior_session}"),
        (
            rows["bad_bar"].fillna(False).astype(bool),
            "a daily bar in the last 20 sessions is invalid (NaN, <= 0 or high < low)",
        ),
        (~(rows["open_price"] > 0), "no valid opening price"),
        (~(rows["prior_close"] > 0), "no valid prior close"),
    ]
    reasons = pd.Series(np.nan, index=rows.index, dtype=object)
    for failed, reason in reversed(checks):
        reasons = reasons.mask(failed.fillna(True).astype(bool), reason)
    return reasons


def apply_filters(features: pd.DataFrame, filters: ScanFilters) -> pd.DataFrame:
    """Mark rows that fail a filter (passed False, with the reason); quality rejects stay as they are."""
    out = features.copy()
    checks = [
        (out["open_price"] < filters.min_price, f"price below ${filters.min_price:g}"),
        (out["open_price"] > filters.max_price, f"price above ${filters.max_price:g}"),
        (
            out["avg_dollar_volume_20"] < filters.min_avg_dollar_volume,
            f"20-day dollar volume below ${filters.min_avg_dollar_volume:,.0f}",
        ),
        (out["gap_pct"] < filters.min_gap_pct, f"gap below {filters.min_gap_pct:g}%"),
        (out["gap_pct"] > filters.max_gap_pct, f"gap above {filters.max_gap_pct:g}%"),
        (out["rel_volume"] < filters.min_rel_volume, f"relative volume below {filters.min_rel_volume:g}"),
    ]
    for failed, reason in checks:
        newly = out["passed"] & failed.fillna(True).astype(bool)
        out.loc[newly, "reject_reason"] = reason
        out.loc[newly, "passed"] = False
    return out
