"""Ranking quality after the fact: how well each ranker's scores ordered the day's realised returns.

For each candidate, from the trade date's regular-session minute bars:
- open_close_pct = (last close / first open - 1) x 100
- open_high_pct = (highest high / first open - 1) x 100
A ranker's quality for a horizon is Spearman's rank correlation between its scores and those
returns over the candidates it scored (ties get their average rank): +1 means it ordered them
exactly, 0 no better than chance. Fewer than 3 scored candidates, or no spread in either column,
gives NaN.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

HORIZONS = {"open_close": "open_close_pct", "open_high": "open_high_pct"}
MIN_POINTS = 3


def realised_returns(minute_bars: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """open_close_pct and open_high_pct per symbol from bars with start <= ts < end (index: symbol)."""
    bars = minute_bars[(minute_bars["ts"] >= start) & (minute_bars["ts"] < end)].sort_values(["symbol", "ts"])
    grouped = bars.groupby("symbol", sort=True)
    first_open = grouped["open"].first()
    out = pd.DataFrame(
        {
            "open_close_pct": (grouped["close"].last() / first_open - 1) * 100,
            "open_high_pct": (grouped["high"].max() / first_open - 1) * 100,
        }
    )
    return out[first_open > 0].rename_axis("symbol")


def spearman(x: pd.Series, y: pd.Series) -> tuple[int, float]:
    """(n, rho) over the labels both series have a value for; rho is NaN below 3 points or without spread."""
    both = pd.concat([x.rename("x"), y.rename("y")], axis=1, join="inner").dropna()
    n = len(both)
    if n < MIN_POINTS:
        return n, float("nan")
    rx, ry = both["x"].rank(method="average"), both["y"].rank(method="average")
    if rx.std(ddof=0) == 0 or ry.std(ddof=0) == 0:
        return n, float("nan")
    return n, float(np.corrcoef(rx.to_numpy(), ry.to_numpy())[0, 1])


def ranking_quality(scores: pd.DataFrame, realised: pd.DataFrame) -> pd.DataFrame:
    """One row per (ranker, horizon): n and spearman.

    Args:
        scores: columns ranker, symbol, score (NaN: the ranker did not score that candidate).
        realised: `realised_returns`' table, indexed by symbol.
    """
    rows = []
    for ranker, group in scores.groupby("ranker", sort=True):
        by_symbol = group.set_index("symbol")["score"].astype(float)
        for horizon, column in HORIZONS.items():
            n, rho = spearman(by_symbol, realised[column])
            rows.append({"ranker": ranker, "horizon": horizon, "n": n, "spearman": rho})
    return pd.DataFrame(rows, columns=["ranker", "horizon", "n", "spearman"])
