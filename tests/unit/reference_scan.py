"""The scan's features as first written: one pandas `groupby().apply()` call per symbol (slow, kept as an oracle).

`openbell.core.scan.scan_features` computes the same frame with whole-column operations; the tests
require the two to agree row for row on the recorded market data, dirty bars included. This copy
takes its constants from nowhere else, so a change to the module's numbers cannot hide here.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

HISTORY_SESSIONS = 20
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
    daily = daily[daily["date"] <= prior_session].sort_values(["symbol", "date"])
    history = daily.groupby("symbol", sort=False).tail(HISTORY_SESSIONS + 1).copy()
    prev_close = history.groupby("symbol", sort=False)["close"].shift(1)
    history["true_range"] = np.maximum(
        history["high"] - history["low"],
        np.maximum((history["high"] - prev_close).abs(), (history["low"] - prev_close).abs()),
    )
    history["dollar_volume"] = history["close"] * history["volume"]
    by_symbol = history.groupby("symbol", sort=False)
    for sessions in (5, 20):
        history[f"ret_{sessions}d_pct"] = (history["close"] / by_symbol["close"].shift(sessions) - 1) * 100
    history["prior_range_pct"] = (history["high"] - history["low"]) / history["close"] * 100
    last20 = by_symbol.tail(HISTORY_SESSIONS)
    grouped = last20.groupby("symbol")
    stats = pd.DataFrame(
        {
            "sessions": grouped.size(),
            "last_date": grouped["date"].max(),
            "daily_close": grouped["close"].last(),
            "avg_volume_20": grouped["volume"].mean(),
            "avg_dollar_volume_20": grouped["dollar_volume"].mean(),
            "ret_5d_pct": grouped["ret_5d_pct"].last(),
            "ret_20d_pct": grouped["ret_20d_pct"].last(),
            "prior_range_pct": grouped["prior_range_pct"].last(),
            "atr14": last20.groupby("symbol").tail(ATR_SESSIONS).groupby("symbol")["true_range"].mean(),
            "bad_bar": grouped.apply(_has_bad_bar, include_groups=False) if len(last20) else pd.Series(dtype=bool),
        }
    )

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


def _has_bad_bar(bars: pd.DataFrame) -> bool:
    prices = bars[["open", "high", "low", "close"]]
    return bool(
        prices.isna().any(axis=None)
        or (prices <= 0).any(axis=None)
        or (bars["high"] < bars["low"]).any()
        or (bars["volume"] < 0).any()
    )


def _quality_reasons(rows: pd.DataFrame, prior_session: date) -> pd.Series:
    """The first data-quality problem of each row, or NaN when the row can be trusted."""
    checks = [
        (rows["sessions"].isna(), "no daily history"),
        (rows["sessions"] < HISTORY_SESSIONS, "fewer than 20 sessions of daily history"),
        (rows["last_date"] != prior_session, f"no daily bar for the previous session {prior_session}"),
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
