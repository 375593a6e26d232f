"""Ranking: the Ranker interface and the deterministic quantitative baseline.

A ranker orders the scan's passing candidates and says why. The baseline scores
gap_pct x rel_volume: a large up-gap on heavy opening volume ranks first. Ties break by
symbol, so the same candidates always give the same ranking. Later rankers (an LLM, an
ensemble of voters) implement the same `Ranker` protocol and fall back to this one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import pandas as pd

from openbell.core.learning import RankerRecord, State


@dataclass(frozen=True, slots=True)
class RankedPick:
    symbol: str
    rank: int  # 1 is best
    score: float
    reason: str
    selected: bool  # within the top N that will be traded
    confidence: float | None = None  # an LLM's confidence in the pick, 0-1
    risk: str | None = None  # the main risk an LLM sees in the pick


class Ranker(Protocol):
    name: str

    def rank(self, candidates: pd.DataFrame, top_n: int) -> list[RankedPick]:
        """Order the passing candidates (rows of the scan's feature table), best first."""
        ...


class GapVolumeRanker:
    """Score = gap_pct x rel_volume over candidates that passed the scan."""

    name = "gap_x_rvol"

    def rank(self, candidates: pd.DataFrame, top_n: int) -> list[RankedPick]:
        passed = candidates[candidates["passed"].astype(bool)].copy()
        passed["score"] = passed["gap_pct"] * passed["rel_volume"]
        passed = passed.sort_values(["score", "symbol"], ascending=[False, True], kind="mergesort")
        return [
            RankedPick(
                symbol=row.symbol,
                rank=i,
                score=float(row.score),
                reason=f"gap {row.gap_pct:+.2f}% x relative volume {row.rel_volume:.1f} = {row.score:.1f}",
                selected=i <= top_n,
            )
            for i, row in enumerate(passed.itertuples(index=False), start=1)
        ]


def fixed_ranking(symbols: Sequence[str]) -> list[RankedPick]:
    """The user's own list, in the given order: overrides scan and ranking (tests, comparisons)."""
    return [
        RankedPick(symbol=s, rank=i, score=0.0, reason="fixed symbols given by the user", selected=True)
        for i, s in enumerate(dict.fromkeys(symbols), start=1)
    ]


METHOD_RANKER = {"llm": "llm", "ensemble": "ensemble", "quant": "gap_x_rvol"}  # ranking.method -> its ranker's name


def choose_ranker(
    method: str,
    *,
    llm_asked: bool,
    llm_fallback: str | None,
    ensemble_failure: str | None,
    quarantined: str | None = None,
) -> tuple[str, str | None]:
    """The ranker whose picks trade, and why it is not the one `method` asks for (None when it is).

    The quant ranker is the fallback of both others: of the LLM when it was not asked or its ranking
    could not be used (`llm_fallback` says why), of the ensemble when it failed, and of either when
    the learning loop quarantined it (`quarantined` says why).
    """
    if quarantined is not None and method != "quant":
        return GapVolumeRanker.name, f"{METHOD_RANKER[method]} is quarantined: {quarantined}"
    if method == "quant":
        return GapVolumeRanker.name, None
    if method == "ensemble":
        return ("ensemble", None) if ensemble_failure is None else (GapVolumeRanker.name, ensemble_failure)
    if not llm_asked:
        return GapVolumeRanker.name, "the LLM was not asked"
    if llm_fallback:
        return GapVolumeRanker.name, llm_fallback
    return "llm", None


Verdicts = Mapping[str, tuple[State, State, str]]  # judge_rankers(): (state before, state, reason) by ranker name
Row = dict[str, Any]  # one row of a table, by column name


def quarantine_reason(verdicts: Verdicts, method: str) -> str | None:
    """Why the learning loop quarantined the ranker `method` asks for (the quant ranker then trades), or None."""
    _, state, reason = verdicts[METHOD_RANKER[method]]
    return reason if state is State.QUARANTINED else None


def ranker_state_rows(day: date, run_id: str, verdicts: Verdicts, records: Mapping[str, RankerRecord]) -> list[Row]:
    """One `ranker_states` row per ranker judged: its state for `day`, the one before, why, and its record."""
    rows = []
    for name, (before, state, reason) in verdicts.items():
        record = records.get(name)
        rows.append({
            "trade_date": day, "ranker": name, "state": state.value, "previous_state": before.value, "reason": reason,
            "sessions": record.sessions if record else 0, "trades": record.trades if record else 0,
            "win_rate": record.win_rate if record else None, "expectancy_pct": record.expectancy_pct if record else None,
            "spearman": record.spearman if record else None, "run_id": run_id,
        })  # fmt: skip
    return rows


def ranking_rows(day: date, run_id: str, ranker: str, picks: Sequence[RankedPick]) -> list[Row]:
    """One `rankings` row per pick of the ranker that trades."""
    return [
        {
            "trade_date": day,
            "ranker": ranker,
            "rank": p.rank,
            "symbol": p.symbol,
            "score": p.score,
            "reason": p.reason,
            "selected": p.selected,
            "confidence": p.confidence,
            "risk": p.risk,
            "run_id": run_id,
        }
        for p in picks
    ]


def score_rows(
    day: date,
    run_id: str,
    by_ranker: Mapping[str, Sequence[RankedPick]],
    votes: pd.DataFrame | None,
    llm_scores: Mapping[str, float] | None,
) -> list[Row]:
    """One `ranker_scores` row per (ranker or voter, candidate): every score that went into the day's choice.

    Args:
        by_ranker: every ranker's picks, by ranker name.
        votes: every voter's score per candidate, as `voters.vote` gives them (None when not computed).
        llm_scores: the LLM's score per candidate shown; None when its ranking was not used (not asked, or it
            fell back), and its picks, being the fallback's, are then recorded under the fallback's name only.
    """
    from openbell.core.voters import EXCLUDED_COLUMN, VOTERS  # voters imports this module

    rows = []
    for ranker, picks in by_ranker.items():
        if ranker == "llm" and llm_scores is None:
            continue
        for p in picks:
            score = llm_scores.get(p.symbol) if ranker == "llm" and llm_scores is not None else p.score
            rows.append(_score_row(day, run_id, ranker, p.symbol, score, p.rank if score is not None else None, p.reason))
    if votes is not None and not votes.empty:
        for voter in VOTERS:
            column = votes[voter].astype(float)
            ranks = column.rank(ascending=False, method="min")
            for symbol, value in column.items():
                known = pd.notna(value)
                note = "" if known else votes.at[symbol, EXCLUDED_COLUMN]
                score, rank = (float(value), int(ranks[symbol])) if known else (None, None)
                rows.append(_score_row(day, run_id, voter, str(symbol), score, rank, note))
    return rows


def _score_row(day: date, run_id: str, ranker: str, symbol: str, score: float | None, rank: int | None, note: str) -> Row:
    return {
        "trade_date": day,
        "ranker": ranker,
        "symbol": symbol,
        "score": score,
        "rank": rank,
        "note": note,
        "run_id": run_id,
    }
