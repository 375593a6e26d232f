"""The pre-market scan task: features and verdicts for the universe, into `candidates`."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from openbell import calendar
from openbell import runtime as wiring
from openbell.core import scan
from openbell.errors import DataQualityError
from tasks.artifacts import publish_table
from tasks.runs import RunContext

DAILY_LOOKBACK = timedelta(days=45)  # calendar days that hold the 20 sessions the scan needs


@task(cache_policy=NO_CACHE)
def scan_candidates(run: RunContext) -> int:
    """Scan every symbol with an opening indication; returns how many passed."""
    log = get_run_logger()
    market, store = wiring.market_for(run.settings, run.mode), wiring.store_for(run.settings)
    prior = calendar.previous_session(run.trade_date)
    daily = market.daily_bars(prior - DAILY_LOOKBACK, prior)
    opening = market.opening_prints(run.trade_date)
    features = scan.scan_features(daily, opening, prior, _last_minute_closes(market, prior))
    features = scan.apply_filters(features, run.settings.scan.filters())
    store.replace(
        "candidates",
        features.assign(trade_date=run.trade_date, run_id=run.run_id),
        where={"trade_date": run.trade_date},
    )

    passed = int(features["passed"].sum())
    shown = features[features["passed"]].sort_values("gap_pct", ascending=False).head(50)
    publish_table(
        "candidates",
        shown[["symbol", "gap_pct", "rel_volume", "atr_pct", "open_price", "prior_close", "avg_dollar_volume_20"]].to_dict(
            orient="records"
        ),
        f"Scan of {run.trade_date}: {len(features)} symbols, {passed} candidates (largest gaps first)",
    )
    reasons = features.loc[~features["passed"], "reject_reason"].value_counts().head(4)
    log.info(
        "scanned %d symbols for %s: %d candidates; most common rejections: %s",
        len(features),
        run.trade_date,
        passed,
        ", ".join(f"{r} ({n})" for r, n in reasons.items()) or "none",
    )
    return passed


def _last_minute_closes(market: wiring.MarketData, prior) -> pd.Series | None:
    """The prior session's last minute close per symbol: unadjusted like the minute bars."""
    try:
        bars = market.minute_bars(prior)
    except DataQualityError:
        return None
    if bars.empty:
        return None
    return bars.groupby("symbol")["close"].last()
