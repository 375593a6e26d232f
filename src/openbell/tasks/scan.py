"""The pre-market scan task: features and verdicts for the universe, into `candidates`."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from openbell import calendar, wiring
from openbell.core import data_quality
from openbell.morning import scan_morning
from openbell.tasks.artifacts import publish_table
from openbell.tasks.runs import RunContext

MOVERS = 50  # how many of a live source's top gainers a scan considers


@task(cache_policy=NO_CACHE)
def scan_candidates(run: RunContext) -> int:
    """Scan every symbol with an opening indication; returns how many passed."""
    log = get_run_logger()
    market, store = wiring.market_for(run.settings, run.mode), wiring.store_for(run.settings, run.mode)
    wall = datetime.now(calendar.NEW_YORK)
    now = wall if run.mode == "live" and wall.date() == run.trade_date else None  # stale prices are today's problem
    scanned = scan_morning(market, run.trade_date, run.settings, _universe(market, run), now)
    features = scanned.candidates
    store.replace(
        "candidates",
        features.assign(trade_date=run.trade_date, run_id=run.run_id),
        where={"trade_date": run.trade_date},
    )
    store.replace(
        "data_quality",
        scanned.quality.assign(trade_date=run.trade_date, run_id=run.run_id),
        where={"trade_date": run.trade_date},
    )
    log.info("data quality of %s: %s", run.trade_date, data_quality.summary(scanned.quality, run.settings.quality.min_score))

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


def _universe(market: wiring.MarketData, run: RunContext) -> list[str] | None:
    """What to scan: the configured watchlist, else a live source's movers, else every symbol of a replay."""
    if run.settings.data.universe:
        return list(run.settings.data.universe)
    movers = getattr(market, "movers", None)  # live sources rank the pre-market's gainers
    return list(movers(top=MOVERS)["symbol"]) if movers else None
