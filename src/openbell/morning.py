"""The morning's decisions for one day, from market data to the day's picks: the scan, the rankers, the prices to size by.

The Prefect tasks of a live or replayed day and the backtest of a date range call these same
functions, so a backtest decides every session the way the trading day decides it. What differs
is around them: the tasks record, publish and log; the LLM is asked by the task, while a backtest
reuses only the replies recorded in DuckDB (see `openbell.research.backtest`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd

from openbell import calendar
from openbell.config import Settings
from openbell.core import data_quality as dq
from openbell.core import scan
from openbell.core.prices import as_price
from openbell.core.ranking import GapVolumeRanker, RankedPick, choose_ranker
from openbell.core.types import Symbol
from openbell.core.voters import VOTERS, EnsembleRanker, vote
from openbell.errors import DataQualityError
from openbell.venues.marketdata import DAILY_COLUMNS, MINUTE_COLUMNS, MarketData

SCAN_LOOKBACK = timedelta(days=45)  # calendar days that hold the 20 sessions the scan needs
VOTER_LOOKBACK = timedelta(days=120)  # calendar days holding the 50 sessions of SMA(50)
PRICE_LOOKBACK = timedelta(days=10)  # calendar days that hold a prior close to size by
NO_PRICE = "no reference price: no opening indication and no prior close"

# What an LLM ranking gives the day: its picks (the fallback's when it failed), its scores per
# candidate shown, and why it fell back (None when its ranking is used). None when it was not asked.
LlmRanking = Callable[[pd.DataFrame, int], tuple[list[RankedPick], dict[str, float], str | None]]


@dataclass(frozen=True)
class MorningScan:
    """The scan of a day: its candidates and what the data-quality gate found.

    `candidates` has `scan.FEATURE_COLUMNS`, one row per symbol with an opening print and one per symbol the
    market data dropped the opening print of (rejected, with the reason). `quality` has
    `data_quality.ISSUE_COLUMNS` and `score`: every issue, and one "score" row per symbol scanned.
    """

    candidates: pd.DataFrame
    quality: pd.DataFrame


def scan_day(
    market: MarketData,
    day: date,
    settings: Settings,
    universe: Collection[str] | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """The scan's features, data-quality verdicts and filters for every symbol with an opening print on `day`."""
    return scan_morning(market, day, settings, universe, now).candidates


def scan_morning(
    market: MarketData,
    day: date,
    settings: Settings,
    universe: Collection[str] | None = None,
    now: datetime | None = None,
) -> MorningScan:
    """The scan of `day` behind the data-quality gate (`openbell.core.data_quality`).

    The gate judges what the scan knows: the previous session's minute bars, the day's bars up to the opening
    print (a replay, `now` None) or up to `now` (a live day), the daily bars of the window, and the rows the
    market data dropped (a source that records them, as the replay source does). Rows of the day dropped after
    the scan's time are recorded but not scored. Stale prices are judged on a live day only, once its session
    has run `stale_after_min` minutes.
    """
    prior = calendar.previous_session(day)
    policy = settings.quality.policy()
    daily = market.daily_bars(prior - SCAN_LOOKBACK, prior, universe)
    opening = market.opening_prints(day, universe)
    prior_bars = _minute_bars(market, prior, universe)
    closes = prior_bars.groupby("symbol")["close"].last() if len(prior_bars) else None
    features = scan.scan_features(daily, opening, prior, closes)
    scanned = set(features["symbol"])

    opens = calendar.session_open(day)
    as_of = opens if now is None else now
    today = _minute_bars(market, day, universe) if as_of >= opens else pd.DataFrame(columns=list(MINUTE_COLUMNS))
    today = today.loc[today["ts"] <= as_of] if len(today) else today
    parts = [frame for frame in (prior_bars, today) if len(frame)]
    bars = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(MINUTE_COLUMNS))
    bars = bars.loc[bars["symbol"].isin(scanned)].sort_values(["symbol", "ts"], ignore_index=True, kind="stable")

    dropped = _dropped(market, day, prior, universe)
    vanished = sorted(set(dropped.loc[(dropped["source"] == "minute") & (dropped["bar_date"] == day), "symbol"]) - scanned)
    dropped = dropped.loc[dropped["symbol"].isin(scanned | set(vanished))]
    late = (dropped["bar_date"] == day) & dropped["ts"].notna()
    late &= pd.to_datetime(dropped["ts"], utc=True) > pd.Timestamp(as_of)
    dropped.loc[late, "reason"] = dropped.loc[late, "reason"] + " (after the scan: not scored)"

    daily_close = daily.loc[daily["date"] == prior].groupby("symbol")["close"].last()
    checks = [
        dropped.loc[~late],
        dq.minute_gaps(bars, policy.max_gap_min),
        dq.outliers(bars, features.set_index("symbol")["atr14"], policy.outlier_atr, policy.outlier_pct),
        dq.split_mismatches(daily_close, _or_empty(closes), prior, policy.split_tolerance_pct),
        _no_opening_print(vanished, day),
    ]
    if now is not None and now >= opens + timedelta(minutes=policy.stale_after_min):
        checks.append(dq.stale_symbols(today, scanned, now, policy.stale_after_min))
    scored = _concat(checks)
    score = dq.scores(scored, scanned | set(vanished))
    why = dq.verdicts(scored, score)

    lost = pd.DataFrame(
        {"symbol": vanished, "passed": False, "reject_reason": [f"data quality {score[s]:.2f}: {why[s]}" for s in vanished]}
    )
    candidates = dq.gate(features, score, why, policy.min_score)
    if vanished:
        candidates = pd.concat([candidates, lost.reindex(columns=candidates.columns)], ignore_index=True)
        candidates = candidates.sort_values("symbol", ignore_index=True)
    candidates = scan.apply_filters(candidates, settings.scan.filters())

    summary = pd.DataFrame(
        {
            "symbol": score.index.astype(str),
            "source": "scan",
            "bar_date": day,
            "ts": None,
            "check": "score",
            "reason": why.replace("", "no issue").to_numpy(),
            "value": score.to_numpy(),
        }
    )
    quality = _concat([scored, dropped.loc[late], summary])
    quality["score"] = quality["symbol"].map(score)
    return MorningScan(candidates, quality.reset_index(drop=True))


def _minute_bars(market: MarketData, day: date, universe: Collection[str] | None) -> pd.DataFrame:
    """The minute bars of `day`; an empty frame when the source has none."""
    try:
        return market.minute_bars(day, universe)
    except DataQualityError:
        return pd.DataFrame(columns=list(MINUTE_COLUMNS))


def _dropped(market: MarketData, day: date, prior: date, universe: Collection[str] | None) -> pd.DataFrame:
    """Issues for the rows the source dropped that the scan of `day` reads: minute bars of `prior` and `day`,
    daily bars of the scan's window. Sources that drop rows without recording them give none."""
    rejected = getattr(market, "rejected_rows", None)
    if rejected is None or rejected.empty:
        return dq.empty_issues()
    issues = dq.dropped_bar_issues(rejected)
    first = prior - SCAN_LOOKBACK
    wanted = np.where(
        issues["source"] == "minute",
        issues["bar_date"].isin([prior, day]),
        [first <= d <= prior for d in issues["bar_date"]],
    )
    if universe is not None:
        wanted &= issues["symbol"].isin(list(universe)).to_numpy()
    return issues.loc[wanted].reset_index(drop=True)


def _no_opening_print(vanished: list[str], day: date) -> pd.DataFrame:
    """The symbols whose opening print the source dropped with the day's bad bars."""
    if not vanished:
        return dq.empty_issues()
    return pd.DataFrame(
        {
            "symbol": vanished,
            "source": "scan",
            "bar_date": day,
            "ts": None,
            "check": "no_opening_print",
            "reason": "no opening print: the day's 09:30 bar was dropped",
            "value": np.nan,
        }
    )


def _or_empty(closes: pd.Series | None) -> pd.Series:
    return closes if closes is not None else pd.Series(dtype=float)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    found = [f for f in frames if len(f)]
    return pd.concat(found, ignore_index=True) if found else dq.empty_issues()


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
    llm_asked, llm_reason = False, None
    llm_scores: dict[str, float] = {}
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
