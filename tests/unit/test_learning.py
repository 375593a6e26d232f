"""The learning loop's verdicts: when a ranker is throttled, quarantined, and let back."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from openbell.core.learning import LearningPolicy, RankerRecord, State, judge_rankers, next_state, ranker_records
from openbell.core.sizing import SizingPolicy, scaled

POLICY = LearningPolicy()


def record(ranker="llm", *, trades=20, win_rate=0.55, expectancy=0.4, spearman=0.2, sessions=20) -> RankerRecord:
    return RankerRecord(ranker, sessions, trades, win_rate if trades else None, expectancy if trades else None, spearman)


def test_records_come_from_the_rankers_own_trades_and_every_rankers_correlations() -> None:
    trades = pd.DataFrame({"ranker": ["llm", "llm", "llm", "gap_x_rvol"], "pnl": [10.0, -5.0, 3.0, -1.0],
                           "return_pct": [1.0, -0.5, 0.3, -0.1]})  # fmt: skip
    quality = pd.DataFrame({"ranker": ["llm", "llm", "ensemble"], "spearman": [0.2, 0.4, -0.3]})

    records = ranker_records(trades, quality)

    assert records["llm"] == RankerRecord("llm", 2, 3, pytest.approx(2 / 3), pytest.approx(0.8 / 3), pytest.approx(0.3))
    assert records["ensemble"] == RankerRecord("ensemble", 1, 0, None, None, pytest.approx(-0.3))
    assert records["gap_x_rvol"].trades == 1 and records["gap_x_rvol"].spearman is None


def test_a_healthy_record_is_active() -> None:
    assert next_state(record(), State.ACTIVE, POLICY)[0] is State.ACTIVE


@pytest.mark.parametrize("win_rate, expectancy", [(0.35, 0.4), (0.55, -0.1)])
def test_a_poor_win_rate_or_a_negative_expectancy_throttles(win_rate: float, expectancy: float) -> None:
    state, reason = next_state(record(win_rate=win_rate, expectancy=expectancy), State.ACTIVE, POLICY)
    assert state is State.THROTTLED and "below the throttle line" in reason


def test_a_bad_expectancy_or_a_ranking_worse_than_random_quarantines() -> None:
    assert next_state(record(expectancy=-0.6), State.ACTIVE, POLICY)[0] is State.QUARANTINED
    assert next_state(record(spearman=-0.2), State.THROTTLED, POLICY)[0] is State.QUARANTINED


def test_the_fallback_is_never_quarantined_only_throttled() -> None:
    state, _ = next_state(record("gap_x_rvol", expectancy=-2.0, spearman=-0.5), State.ACTIVE, POLICY)
    assert state is State.THROTTLED


def test_a_quarantined_ranker_without_trades_recovers_through_throttled_once_its_ranking_is_good_again() -> None:
    still_bad = record(trades=0, spearman=0.02)
    recovered = record(trades=0, spearman=0.12)

    assert next_state(still_bad, State.QUARANTINED, POLICY)[0] is State.QUARANTINED
    state, reason = next_state(recovered, State.QUARANTINED, POLICY)
    assert state is State.THROTTLED and "recovering" in reason
    assert next_state(record(), State.THROTTLED, POLICY)[0] is State.ACTIVE  # then good trades make it active


def test_with_enough_trades_a_quarantined_ranker_stays_out_until_its_ranking_recovers() -> None:
    assert next_state(record(spearman=0.0), State.QUARANTINED, POLICY)[0] is State.QUARANTINED
    assert next_state(record(spearman=0.1), State.QUARANTINED, POLICY)[0] is State.THROTTLED


def test_too_little_history_keeps_the_state_it_had() -> None:
    thin = record(trades=3, sessions=2, expectancy=-5.0, spearman=-0.9)
    for previous in State:
        assert next_state(thin, previous, POLICY) == (previous, "too little history to judge")
    assert next_state(None, State.ACTIVE, POLICY) == (State.ACTIVE, "too little history to judge")


def test_few_trades_but_a_scored_ranking_can_quarantine() -> None:
    state, reason = next_state(record(trades=2, spearman=-0.3), State.ACTIVE, POLICY)
    assert state is State.QUARANTINED and "worse than random" in reason


def test_every_ranker_with_a_record_a_past_state_or_the_request_is_judged_from_its_last_state() -> None:
    records = {"ensemble": record("ensemble", trades=12, expectancy=-0.9), "momentum": record("momentum", trades=0)}
    previous = {"gap_x_rvol": State.THROTTLED, "momentum": State.QUARANTINED}

    verdicts = judge_rankers(records, previous, "llm", POLICY)

    assert list(verdicts) == ["ensemble", "gap_x_rvol", "llm", "momentum"]
    assert verdicts["ensemble"][:2] == (State.ACTIVE, State.QUARANTINED)  # never judged before: it was active
    assert verdicts["gap_x_rvol"] == (State.THROTTLED, State.THROTTLED, "too little history to judge")
    assert verdicts["llm"] == (State.ACTIVE, State.ACTIVE, "too little history to judge")
    assert verdicts["momentum"][:2] == (State.QUARANTINED, State.THROTTLED)  # its ranking recovered


def test_a_throttled_size_scales_the_allocation_or_the_percent_of_equity() -> None:
    assert scaled(SizingPolicy(Decimal(10_000)), Decimal("0.5")).allocation == Decimal(5_000)
    assert scaled(SizingPolicy(pct_of_equity=Decimal(10)), Decimal("0.5")).pct_of_equity == Decimal(5)


def test_thresholds_that_contradict_each_other_are_refused() -> None:
    with pytest.raises(ValueError, match="recover_spearman"):
        LearningPolicy(quarantine_spearman=0.2, recover_spearman=0.1)
