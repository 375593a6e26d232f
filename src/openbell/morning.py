"""The morning's decisions for one day, from market data to the day's picks: the scan, the rankers, the prices to size by.

The Prefect tasks of a live or replayed day and the backtest of a date range call these same
functions, so a backtest decides every session the way the trading day decides it. What differs
is around them: the tasks record, publish and log; the LLM is asked by the task, while a backtest
reuses only the replies recorded in DuckDB (see `openbell.research.backtest`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

import pandas as pd

from openbell import calendar
from openbell.config import Settings
from openbell.core import scan
from openbell.core.prices import as_price
from openbell.core.ranking import GapVolumeRanker, RankedPick, choose_ranker
from openbell.core.types import Symbol
from openbell.core.voters import VOTERS, EnsembleRanker, vote
from openbell.errors import DataQualityError
from openbell.marketdata import MarketData
from openbell.marketdata.base import DAILY_COLUMNS

SCAN_LOOKBACK = timedelta(days=45)  # calendar days that hold the 20 sessions the scan needs
VOTER_LOOKBACK = timedelta(days=120)  # calendar days holding the 50 sessions of SMA(50)
PRICE_LOOKBACK = timedelta(days=10)  # calendar days that hold a prior close to size by
NO_PRICE = "no reference price: no opening indication and no prior close"

# What an LLM ranking gives the day: its picks (the fallback's when it failed), its scores per
# candidate shown, and why it fell back (None when its ranking is used). None when it was not asked.
LlmRanking = Callable[[pd.DataFrame, int], tuple[list[RankedPick], dict[str, float], str | None]]


def scan_day(market: MarketData, day: date, settings: Settings, universe: Collection[str] | None = None) -> pd.DataFrame:
    """The scan's features, data-quality verdicts and filters for every symbol with an opening print on `day`."""
    prior = calendar.previous_session(day)
    daily = market.daily_bars(prior - SCAN_LOOKBACK, prior, universe)
    opening = market.opening_prints(day, universe)
    features = scan.scan_features(daily, opening, prior, last_minute_closes(market, prior, universe))
    return scan.apply_filters(features, settings.scan.filters())


def last_minute_closes(market: MarketData, day: date, universe: Collection[str] | None = None) -> pd.Series | None:
    """Each symbol's last minute close of `day`: unadjusted like the minute bars (None without minute bars)."""
    try:
        bars = market.minute_bars(day, universe)
    except DataQualityError:
        return None
    if bars.empty:
        return None
    return bars.groupby("symbol")["close"].last()


@dataclass(frozen=True)
class DayRanking:
    """Which ranker's picks trade on a day, why, and what every ranker said."""

    ranker: str  # the ranker whose picks trade
    picks: list[RankedPick]
    requested: str  # ranking.method
    fallback_reason: str | None  # why `ranker` is not the one requested
    by_ranker: dict[str, list[RankedPick]] = field(default_factory=dict)
    votes: pd.DataFrame | None = None  # every voter's score per passing candidate (vote()), when computed
    llm_scores: dict[str, float] = field(default_factory=dict)
    ensemble_failure: str | None = None  # why the ensemble gave no ranking, when it failed

    @property
    def selected(self) -> list[str]:
        return [p.symbol for p in self.picks if p.selected]


def rank_day(
    candidates: pd.DataFrame,
    day: date,
    settings: Settings,
    market: MarketData,
    *,
    llm: LlmRanking | None = None,
    every_ranker: bool = True,
    quarantined: str | None = None,
) -> DayRanking:
    """Rank the scan's candidates the way `ranking.method` asks, falling back to the quant ranker.

    Args:
        llm: asks the LLM (None: the LLM is not asked, as when the method is quant).
        every_ranker: also compute the ensemble and the voters when they do not decide the day
            (the trading day records them all; a backtest skips what it does not trade).
        quarantined: why the learning loop quarantined the method's ranker: it is still asked (and
            scored), but the quant ranker's picks trade.
    """
    method, top_n = settings.ranking.method, settings.scan.top_n
    quant = GapVolumeRanker()
    by_ranker = {quant.name: quant.rank(candidates, top_n)}
    llm_asked, llm_reason, llm_scores = False, None, {}
    if llm is not None and method in ("llm", "ensemble"):
        by_ranker["llm"], llm_scores, llm_reason = llm(candidates, top_n)
        llm_asked = True
    votes, ensemble_failure = None, None
    if every_ranker or method == "ensemble":
        note = _llm_note(settings, llm_asked, llm_reason)
        try:
            votes, by_ranker["ensemble"] = _ensemble(candidates, day, settings, market, llm_scores, note)
        except Exception as exc:  # voters are advisory unless they decide the day
            ensemble_failure = f"ensemble failed: {type(exc).__name__}: {exc}"
    ranker, reason = choose_ranker(
        method, llm_asked=llm_asked, llm_fallback=llm_reason, ensemble_failure=ensemble_failure, quarantined=quarantined
    )
    return DayRanking(ranker, by_ranker[ranker], method, reason, by_ranker, votes, llm_scores, ensemble_failure)


def _llm_note(settings: Settings, asked: bool, fallback: str | None) -> str:
    """Why the LLM voter has no score for a candidate."""
    if not asked:
        return "llm: not asked (ranking.method is quant)" if settings.llm.configured else "llm: not configured"
    return f"llm: {fallback}" if fallback else "llm: not shown this candidate"


def _ensemble(
    candidates: pd.DataFrame,
    day: date,
    settings: Settings,
    market: MarketData,
    llm_scores: dict[str, float],
    llm_note: str,
) -> tuple[pd.DataFrame, list[RankedPick]]:
    """Every voter's score and the ensemble's ranking by the configured weights."""
    passed = candidates[candidates["passed"].astype(bool)]
    daily = voters_daily(market, day, candidates)
    ranking = settings.ranking
    ensemble = EnsembleRanker(
        ranking.weights,
        ranking.min_agree,
        daily=daily,
        external={"llm": pd.Series(llm_scores, dtype=float)},
        missing_notes={"llm": llm_note},
    )
    picks = ensemble.rank(candidates, settings.scan.top_n)
    return (vote(passed, daily) if len(passed) else pd.DataFrame()), picks


def voters_daily(market: MarketData, day: date, candidates: pd.DataFrame) -> pd.DataFrame:
    """The daily bars the voters read for the day's passing candidates."""
    symbols = sorted(candidates.loc[candidates["passed"].astype(bool), "symbol"].astype(str))
    if not symbols:
        return pd.DataFrame(columns=DAILY_COLUMNS)
    prior = calendar.previous_session(day)
    return market.daily_bars(prior - VOTER_LOOKBACK, prior, symbols)


def voter_rankings(
    candidates: pd.DataFrame, day: date, settings: Settings, market: MarketData
) -> dict[str, list[RankedPick]]:
    """Each voter's own ranking of the day's candidates: the ensemble with that voter alone."""
    daily = voters_daily(market, day, candidates)
    top_n = settings.scan.top_n
    return {name: EnsembleRanker({name: 1.0}, daily=daily).rank(candidates, top_n) for name in VOTERS}


def reference_prices(market: MarketData, day: date, symbols: list[Symbol]) -> dict[Symbol, Decimal]:
    """Prices to size by: the opening indication, else the prior close (the entry may then go unfilled)."""
    opening = market.opening_prints(day, symbols)
    prices = {Symbol(r.symbol): as_price(r.open) for r in opening.itertuples()}
    missing = [s for s in symbols if s not in prices]
    return prices | (prior_closes(market, day, missing) if missing else {})


def prior_closes(market: MarketData, day: date, symbols: list[Symbol]) -> dict[Symbol, Decimal]:
    """Each symbol's last daily close before `day`: the price to size by when it has no opening indication."""
    prior = calendar.previous_session(day)
    daily = market.daily_bars(prior - PRICE_LOOKBACK, prior, symbols)
    return {Symbol(symbol): as_price(close) for symbol, close in daily.groupby("symbol")["close"].last().items()}
