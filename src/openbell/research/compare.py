"""Ranker comparisons: the same range backtested with each ranker's picks, side by side.

Every session is scanned once; each ranker (the quant baseline, each voter alone, the ensemble, the
LLM from its recorded replies) then picks from the same candidates, and each ranker's picks are
traded on an account of their own by `research.backtest.trade_sessions`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pandas as pd

from openbell.core.ranking import RankedPick
from openbell.core.types import Symbol
from openbell.core.voters import VOTERS
from openbell.errors import ConfigError
from openbell.morning import rank_day, reference_prices, scan_day, voter_rankings
from openbell.research.backtest import (
    BacktestSpec,
    Progress,
    SessionPlan,
    recorded_llm,
    replay_source,
    result_of,
    sessions_of,
    trade_sessions,
)
from openbell.research.results import BacktestResult

RANKERS = ("gap_x_rvol", *VOTERS, "ensemble", "llm")


@dataclass(frozen=True)
class SessionChoices:
    """One session's picks by every ranker compared."""

    day: date
    plans: dict[str, SessionPlan]


def plan_session_for_each(spec: BacktestSpec, day: date, rankers: tuple[str, ...]) -> SessionChoices:
    """Scan `day` once and let every ranker pick from its candidates."""
    settings = spec.settings
    market = replay_source(settings)
    candidates = scan_day(market, day, settings)
    passed = int(candidates["passed"].sum())
    picks: dict[str, tuple[list[RankedPick], str | None]] = {}
    if {"gap_x_rvol", "ensemble", "llm"} & set(rankers):
        asks_llm = "llm" in rankers
        llm, _ = recorded_llm(spec, day) if asks_llm else (None, [])
        method = settings.ranking.method if not asks_llm else "llm"
        day_ranking = rank_day(
            candidates, day, settings.updated({"ranking": {"method": method}}), market, llm=llm, every_ranker=True
        )
        for name in ("gap_x_rvol", "ensemble", "llm"):
            if name in day_ranking.by_ranker:
                reason = day_ranking.fallback_reason if name == "llm" and day_ranking.ranker != "llm" else None
                chosen = day_ranking.by_ranker[name] if reason is None else []
                picks[name] = (chosen, reason)
    if set(VOTERS) & set(rankers):
        for name, ranked in voter_rankings(candidates, day, settings, market).items():
            picks[name] = (ranked, None)
    prices = reference_prices(
        market, day, sorted({Symbol(p.symbol) for ranked, _ in picks.values() for p in ranked if p.selected})
    )
    plans = {}
    for name in rankers:
        ranked, reason = picks.get(name, ([], f"{name} gave no ranking"))
        selected = [Symbol(p.symbol) for p in ranked if p.selected]
        plans[name] = SessionPlan(day, name, reason, passed, tuple((s, prices.get(s, Decimal(0))) for s in selected))
    return SessionChoices(day, plans)


def compare_rankers(
    spec: BacktestSpec, *, run_id: str, rankers: tuple[str, ...] = RANKERS, progress: Progress = lambda *_: None
) -> dict[str, BacktestResult]:
    """Backtest the range once per ranker on the same sessions and candidates; results by ranker.

    The LLM is left out when none is configured (it would only repeat the quant baseline).
    """
    unknown = sorted(set(rankers) - set(RANKERS))
    if unknown:
        raise ConfigError(f"unknown ranker(s) {', '.join(unknown)}; choose from {', '.join(RANKERS)}")
    if spec.symbols:
        raise ConfigError("a comparison ranks the scan's candidates: leave out --symbols")
    if not spec.settings.llm.configured:
        rankers = tuple(r for r in rankers if r != "llm")
    started = time.perf_counter()
    market = replay_source(spec.settings)
    days = sessions_of(spec, market)
    choices = []
    for done, day in enumerate(days, start=1):
        choices.append(plan_session_for_each(spec, day, rankers))
        progress(day, done, len(days))
    symbols = sorted({s for c in choices for plan in c.plans.values() for s, _ in plan.picks})
    bars, sessions = market.session_bars_between(days[0], days[-1], symbols)
    results = {}
    for name in rankers:
        trades, daily, notes = trade_sessions(spec, [c.plans[name] for c in choices], bars, sessions)
        parameters = spec.parameters() | {"ranker": name, "sessions": len(days)}
        results[name] = result_of(spec, run_id, parameters, trades, daily, notes)
    wall_s = round(time.perf_counter() - started, 3)
    for result in results.values():
        result.parameters["wall_s"] = wall_s
    return results


def comparison_table(results: dict[str, BacktestResult]) -> pd.DataFrame:
    """One row per ranker with its metrics, best total return first."""
    rows = pd.DataFrame([{"ranker": name, **r.metrics} for name, r in results.items()])
    return rows.sort_values("total_return_pct", ascending=False, kind="mergesort").reset_index(drop=True)
