"""The ranking task: order the candidates (or take the user's symbols) into `rankings`."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from openbell import runtime as wiring
from openbell.core.ranking import GapVolumeRanker, fixed_ranking
from openbell.errors import ConfigError
from tasks.artifacts import publish_table
from tasks.runs import RunContext


@task(cache_policy=NO_CACHE)
def rank(run: RunContext, symbols: list[str] | None) -> list[str]:
    """Rank the day's candidates; returns the selected symbols, best first."""
    log = get_run_logger()
    store = wiring.store_for(run.settings)
    if symbols:
        _require_known(run, symbols)
        ranker, picks = "fixed", fixed_ranking([s.strip().upper() for s in symbols])
    else:
        candidates = store.query_df("SELECT * FROM candidates WHERE trade_date = ?", [run.trade_date])
        if candidates.empty:
            raise ConfigError(f"no scan for {run.trade_date}: run premarket_scan first, or pass symbols")
        ranker = GapVolumeRanker()
        picks, ranker = ranker.rank(candidates, run.settings.scan.top_n), ranker.name
    store.replace(
        "rankings",
        [
            {
                "trade_date": run.trade_date,
                "ranker": ranker,
                "rank": p.rank,
                "symbol": p.symbol,
                "score": p.score,
                "reason": p.reason,
                "selected": p.selected,
                "run_id": run.run_id,
            }
            for p in picks
        ],
        where={"trade_date": run.trade_date},
    )
    selected = [p.symbol for p in picks if p.selected]
    publish_table(
        "ranking",
        [
            {"rank": p.rank, "symbol": p.symbol, "score": p.score, "selected": p.selected, "reason": p.reason}
            for p in picks[:50]
        ],
        f"Ranking of {run.trade_date} by {ranker}: trading {', '.join(selected) or 'nothing'}",
    )
    log.info("ranked %d candidates with %s; trading %s", len(picks), ranker, ", ".join(selected) or "nothing")
    return selected


def _require_known(run: RunContext, symbols: list[str]) -> None:
    known = set(wiring.market_for(run.settings, run.mode).minute_bars(run.trade_date)["symbol"].unique())
    unknown = sorted({s.strip().upper() for s in symbols} - known)
    if unknown:
        raise ConfigError(f"unknown symbol(s) {', '.join(unknown)}: no minute bars on {run.trade_date}")
