"""The learning loop: each ranker's recent record decides whether it trades in full, trades smaller, or sits out.

From realised results over the last sessions (the trades a ranker's picks made, and the rank
correlation of every ranker's scores with the candidates' returns in `ranking_quality`, which is
kept for rankers that do not trade too), each ranker is in one of three states:

- ACTIVE: trades as configured.
- THROTTLED: trades at `throttle_size` of the configured size (its win rate or expectancy is poor).
- QUARANTINED: the quant fallback ranks instead (its expectancy is bad, or its ranking is worse
  than random); it is still asked and scored every day, so it can earn its way back.

A quarantined ranker recovers through THROTTLED once its rank correlation is back above
`recover_spearman`; it becomes ACTIVE when its trades say so. The fallback itself is never
quarantined (something has to trade), only throttled. Too little history keeps the state it had.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

import pandas as pd

FALLBACK = "gap_x_rvol"


class State(StrEnum):
    ACTIVE = "active"
    THROTTLED = "throttled"
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class LearningPolicy:
    """The thresholds; the defaults are documented in the README (Learning loop)."""

    lookback_sessions: int = 20
    min_trades: int = 10  # fewer trades: judged on rank correlation alone
    min_sessions: int = 5  # fewer scored sessions: too little history to judge
    throttle_win_rate: float = 0.40
    throttle_expectancy_pct: float = 0.0  # mean return per trade, percent
    quarantine_expectancy_pct: float = -0.5
    quarantine_spearman: float = -0.10
    recover_spearman: float = 0.05
    throttle_size: Decimal = Decimal("0.5")

    def __post_init__(self) -> None:
        if self.lookback_sessions < 1 or self.min_trades < 1 or self.min_sessions < 1:
            raise ValueError("lookback_sessions, min_trades and min_sessions must be at least 1")
        if not Decimal(0) < self.throttle_size <= Decimal(1):
            raise ValueError(f"throttle_size must be in (0, 1], got {self.throttle_size}")
        if self.recover_spearman < self.quarantine_spearman:
            raise ValueError("recover_spearman must not be below quarantine_spearman")


@dataclass(frozen=True, slots=True)
class RankerRecord:
    """A ranker's realised record over the lookback."""

    ranker: str
    sessions: int  # sessions with a rank correlation
    trades: int
    win_rate: float | None
    expectancy_pct: float | None  # mean return per trade, percent
    spearman: float | None  # mean rank correlation with the open-to-close return


def ranker_records(trades: pd.DataFrame, quality: pd.DataFrame) -> dict[str, RankerRecord]:
    """Each ranker's record from its trades (columns ranker, pnl, return_pct) and its daily
    rank correlations (columns ranker, spearman), both already cut to the lookback."""
    names = sorted({*trades.get("ranker", pd.Series(dtype=str)), *quality.get("ranker", pd.Series(dtype=str))})
    records = {}
    for name in names:
        own = trades[trades["ranker"] == name] if len(trades) else trades
        rho = quality.loc[quality["ranker"] == name, "spearman"].dropna() if len(quality) else pd.Series(dtype=float)
        records[name] = RankerRecord(
            name,
            sessions=len(rho),
            trades=len(own),
            win_rate=float((own["pnl"] > 0).mean()) if len(own) else None,
            expectancy_pct=float(own["return_pct"].mean()) if len(own) else None,
            spearman=float(rho.mean()) if len(rho) else None,
        )
    return records


def next_state(record: RankerRecord | None, previous: State, policy: LearningPolicy) -> tuple[State, str]:
    """The ranker's state for the next session, and the reason in a sentence."""
    if record is None or record.sessions < policy.min_sessions and record.trades < policy.min_trades:
        return previous, "too little history to judge"
    rho = record.spearman
    can_quarantine = record.ranker != FALLBACK
    if record.trades >= policy.min_trades:
        assert record.win_rate is not None and record.expectancy_pct is not None
        numbers = (f"{record.trades} trades, win rate {record.win_rate:.0%}, expectancy {record.expectancy_pct:+.2f}%"
                   + (f", rank correlation {rho:+.2f}" if rho is not None else ""))  # fmt: skip
        bad_ranking = rho is not None and rho < policy.quarantine_spearman
        if can_quarantine and (record.expectancy_pct < policy.quarantine_expectancy_pct or bad_ranking):
            return State.QUARANTINED, f"{numbers}: below the quarantine line"
        if previous is State.QUARANTINED and (rho is None or rho < policy.recover_spearman):
            return State.QUARANTINED, f"{numbers}: rank correlation not yet above {policy.recover_spearman:+.2f}"
        poor = record.win_rate < policy.throttle_win_rate or record.expectancy_pct < policy.throttle_expectancy_pct
        if poor or previous is State.QUARANTINED:
            why = "below the throttle line" if poor else "recovering from quarantine"
            return State.THROTTLED, f"{numbers}: {why}"
        return State.ACTIVE, f"{numbers}: healthy"
    # Too few trades (a quarantined ranker does not trade): the ranking's quality decides.
    if rho is None or record.sessions < policy.min_sessions:
        return previous, "too little history to judge"
    numbers = f"rank correlation {rho:+.2f} over {record.sessions} sessions, {record.trades} trades"
    if can_quarantine and rho < policy.quarantine_spearman:
        return State.QUARANTINED, f"{numbers}: worse than random"
    if previous is State.QUARANTINED:
        if rho >= policy.recover_spearman:
            return State.THROTTLED, f"{numbers}: recovering from quarantine"
        return State.QUARANTINED, f"{numbers}: not yet above {policy.recover_spearman:+.2f}"
    return previous, f"{numbers}: too few trades to change"


def judge_rankers(
    records: dict[str, RankerRecord], previous: dict[str, State], requested: str, policy: LearningPolicy
) -> dict[str, tuple[State, State, str]]:
    """Every ranker's verdict for the next session: (its state before, its state, the reason), by name.

    The rankers judged are those with a record, those judged before (`previous`, a ranker's latest
    state) and the one `ranking.method` asks for; a ranker never judged before starts active.
    """
    verdicts = {}
    for name in sorted({*records, *previous, requested}):
        before = previous.get(name, State.ACTIVE)
        verdicts[name] = (before, *next_state(records.get(name), before, policy))
    return verdicts
