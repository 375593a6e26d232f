"""Ranking: the Ranker interface and the deterministic quantitative baseline.

A ranker orders the scan's passing candidates and says why. The baseline scores
gap_pct x rel_volume: a large up-gap on heavy opening volume ranks first. Ties break by
symbol, so the same candidates always give the same ranking. Later rankers (an LLM, an
ensemble of voters) implement the same `Ranker` protocol and fall back to this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pandas as pd


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
