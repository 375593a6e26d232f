"""The ranking task: order the candidates (or take the user's symbols) into `rankings`, and explain it.

Every ranker scores the day's candidates: the quant baseline (gap x relative volume), each
ensemble voter, the LLM when one is configured, and the ensemble that combines them. The one
the settings ask for (`ranking.method`) decides what trades; the others are recorded next to
it in `ranker_scores`, and `ranking_decisions` says which one traded and, when it is not the
one asked for, why. Nothing the LLM does can fail the morning: it falls back to the quant ranker.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from openbell import calendar, wiring
from openbell.core.learning import judge_rankers, ranker_records
from openbell.core.ranking import (
    METHOD_RANKER,
    GapVolumeRanker,
    RankedPick,
    Row,
    fixed_ranking,
    quarantine_reason,
    ranker_state_rows,
    ranking_rows,
    score_rows,
)
from openbell.errors import ConfigError
from openbell.llm import audit
from openbell.llm.news import fetch_headlines
from openbell.llm.prompt import Headline, prompt_candidates
from openbell.llm.ranker import LlmOutcome, LlmRanker, llm_time_budget, too_close_to_moo
from openbell.morning import rank_day
from openbell.store import Store, ledger, records
from openbell.tasks.artifacts import publish_table
from openbell.tasks.runs import RunContext


@task(cache_policy=NO_CACHE)
def rank(run: RunContext, symbols: list[str] | None) -> list[str]:
    """Rank the day's candidates; returns the selected symbols, best first."""
    log = get_run_logger()
    store = wiring.store_for(run.settings, run.mode)
    method = run.settings.ranking.method
    if symbols:
        _require_known(run, symbols)
        picks = fixed_ranking([s.strip().upper() for s in symbols])
        _record(store, run, "fixed", picks, [], requested=method, fallback_reason=None, llm_key=None)
        return _publish(run, "fixed", picks, None)

    candidates = records.candidates(store, run.trade_date)
    if candidates.empty:
        raise ConfigError(f"no scan for {run.trade_date}: run premarket_scan first, or pass symbols")
    outcomes: list[LlmOutcome] = []

    def ask_llm(candidates: pd.DataFrame, top_n: int) -> tuple[list[RankedPick], dict[str, float], str | None]:
        picks, outcome = _llm_ranking(run, store, candidates, GapVolumeRanker())
        outcomes.append(outcome)
        audit.record_calls(store, outcome.calls)  # at once: the audit survives anything that follows
        if outcome.fallback_reason:
            log.warning("LLM ranking not used, falling back to %s: %s", GapVolumeRanker.name, outcome.fallback_reason)
        return picks, outcome.scores, outcome.fallback_reason

    market = wiring.market_for(run.settings, run.mode)
    quarantined = _judge_rankers(run, store)
    day = rank_day(candidates, run.trade_date, run.settings, market, llm=ask_llm, quarantined=quarantined)
    if day.ensemble_failure:  # voters are advisory unless they decide the day
        log.warning("%s", day.ensemble_failure)
    outcome = outcomes[0] if outcomes else None
    scores = score_rows(run.trade_date, run.run_id, day.by_ranker, day.votes, outcome.used_scores if outcome else None)
    key = outcome.request_key if outcome else None
    _record(store, run, day.ranker, day.picks, scores, requested=method, fallback_reason=day.fallback_reason, llm_key=key)
    return _publish(run, day.ranker, day.picks, day.fallback_reason)


def _judge_rankers(run: RunContext, store: Store) -> str | None:
    """The learning loop: each ranker's state for the day from its recent record, recorded with the reason.

    Returns why the method's ranker is quarantined (the fallback then trades), or None.
    """
    learning = run.settings.learning
    if not learning.enabled:
        return None
    policy, day, method = learning.policy(), run.trade_date, run.settings.ranking.method
    trades, quality = ledger.ranker_history(store, day, policy.lookback_sessions)
    records = ranker_records(trades, quality)
    verdicts = judge_rankers(records, ledger.ranker_states(store, day), METHOD_RANKER[method], policy)
    for name, (before, state, reason) in verdicts.items():
        if state is not before:
            get_run_logger().warning("learning loop: %s %s -> %s: %s", name, before.value, state.value, reason)
    store.replace("ranker_states", ranker_state_rows(day, run.run_id, verdicts, records), where={"trade_date": day})
    return quarantine_reason(verdicts, method)


def _llm_ranking(
    run: RunContext, store: Store, candidates: pd.DataFrame, fallback: GapVolumeRanker
) -> tuple[list[RankedPick], LlmOutcome]:
    """The LLM's ranking with the day's headlines and recorded replies, in a budget that keeps the MOO safe."""
    settings = run.settings
    when = wiring.day_times(run.trade_date, settings)
    now = wiring.clock_for(run.mode, when.scan).now()
    budget_s = llm_time_budget(now, when.moo, settings.llm.budget_s)
    if settings.llm.configured and budget_s is None:
        outcome = LlmOutcome(None, fallback_reason=too_close_to_moo(now, when.moo))
        return fallback.rank(candidates, settings.scan.top_n), outcome
    headlines = _headlines(run, store, candidates, until=now) if settings.llm.configured else {}
    llm = LlmRanker(
        settings.llm,
        trade_date=run.trade_date,
        run_id=run.run_id,
        fallback=fallback,
        headlines=headlines,
        cached=lambda key: audit.cached_reply(store, key),
        budget_s=budget_s,
    )
    picks = llm.rank(candidates, settings.scan.top_n)
    assert llm.outcome is not None  # rank() always says what it did
    return picks, llm.outcome


def _headlines(run: RunContext, store: Store, candidates: pd.DataFrame, until: datetime) -> dict[str, list[Headline]]:
    """The day's recorded headlines (a replay sends the same prompt), else fresh ones from the provider."""
    news = run.settings.news
    if not news.configured:
        return {}
    if not run.settings.llm.fresh and (recorded := audit.recorded_headlines(store, run.trade_date)) is not None:
        return recorded
    symbols = [row["symbol"] for row in prompt_candidates(candidates, run.settings.llm.max_candidates)]
    headlines, problem = fetch_headlines(news, symbols, until)
    if problem:
        get_run_logger().warning("no headlines from %s: %s; ranking without news", news.provider, problem)
        return {}
    audit.record_headlines(store, run.trade_date, headlines, news.provider, datetime.now(calendar.NEW_YORK))
    return headlines


def _record(
    store: Store,
    run: RunContext,
    ranker: str,
    picks: list[RankedPick],
    scores: list[Row],
    *,
    requested: str,
    fallback_reason: str | None,
    llm_key: str | None,
) -> None:
    day = run.trade_date
    with store.batch():
        store.replace("rankings", ranking_rows(day, run.run_id, ranker, picks), where={"trade_date": day})
        store.replace("ranker_scores", scores, where={"trade_date": day})
        store.replace(
            "ranking_decisions",
            [
                {
                    "trade_date": day,
                    "requested": requested,
                    "ranker": ranker,
                    "fallback_reason": fallback_reason,
                    "llm_request_key": llm_key,
                    "decided_at": datetime.now(calendar.NEW_YORK),
                    "run_id": run.run_id,
                }
            ],
            where={"trade_date": day},
        )


def _publish(run: RunContext, ranker: str, picks: list[RankedPick], fallback_reason: str | None) -> list[str]:
    selected = [p.symbol for p in picks if p.selected]
    why = f" (fallback: {fallback_reason})" if fallback_reason else ""
    publish_table(
        "ranking",
        [
            {
                "rank": p.rank,
                "symbol": p.symbol,
                "score": p.score,
                "confidence": p.confidence,
                "selected": p.selected,
                "reason": p.reason,
                "risk": p.risk,
            }
            for p in picks[:50]
        ],
        f"Ranking of {run.trade_date} by {ranker}{why}: trading {', '.join(selected) or 'nothing'}",
    )
    get_run_logger().info(
        "ranked %d candidates with %s%s; trading %s", len(picks), ranker, why, ", ".join(selected) or "nothing"
    )
    return selected


def _require_known(run: RunContext, symbols: list[str]) -> None:
    known = set(wiring.market_for(run.settings, run.mode).minute_bars(run.trade_date)["symbol"].unique())
    unknown = sorted({s.strip().upper() for s in symbols} - known)
    if unknown:
        raise ConfigError(f"unknown symbol(s) {', '.join(unknown)}: no minute bars on {run.trade_date}")
