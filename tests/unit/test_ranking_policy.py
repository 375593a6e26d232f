"""Which ranker trades and why, how long the LLM may take before the MOO orders, and the score rows recorded."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from openbell.calendar import NEW_YORK
from openbell.core.learning import RankerRecord, State
from openbell.core.ranking import (
    RankedPick,
    choose_ranker,
    quarantine_reason,
    ranker_state_rows,
    ranking_rows,
    score_rows,
)
from openbell.core.voters import EXCLUDED_COLUMN, VOTERS
from openbell.llm.ranker import MIN_LLM_BUDGET_S, MOO_MARGIN, LlmOutcome, llm_time_budget, too_close_to_moo

DAY = date(2026, 3, 10)
MOO = datetime(2026, 3, 10, 9, 28, tzinfo=NEW_YORK)  # the market-on-open orders go out
RUN = "run-1"


def pick(symbol: str, rank: int, score: float, selected: bool = True) -> RankedPick:
    return RankedPick(symbol, rank, score, f"why {symbol}", selected)


# which ranker trades


def test_the_llm_trades_when_asked_and_its_ranking_is_used():
    assert choose_ranker("llm", llm_asked=True, llm_fallback=None, ensemble_failure=None) == ("llm", None)


def test_the_quant_ranker_trades_when_the_llm_failed_and_says_why():
    decision = choose_ranker("llm", llm_asked=True, llm_fallback="LLM reply invalid twice", ensemble_failure=None)

    assert decision == ("gap_x_rvol", "LLM reply invalid twice")


def test_the_quant_ranker_trades_when_the_llm_timed_out_before_the_moo():
    reason = too_close_to_moo(MOO - MOO_MARGIN, MOO)

    assert choose_ranker("llm", llm_asked=True, llm_fallback=reason, ensemble_failure=None) == ("gap_x_rvol", reason)


def test_the_quant_ranker_trades_when_the_llm_was_not_asked():
    decision = choose_ranker("llm", llm_asked=False, llm_fallback=None, ensemble_failure=None)

    assert decision == ("gap_x_rvol", "the LLM was not asked")


def test_the_quant_ranker_trades_when_the_llm_is_quarantined_even_if_its_ranking_worked():
    decision = choose_ranker("llm", llm_asked=True, llm_fallback=None, ensemble_failure=None, quarantined="expectancy -0.8%")

    assert decision == ("gap_x_rvol", "llm is quarantined: expectancy -0.8%")


def test_the_quant_ranker_trades_when_the_ensemble_failed():
    decision = choose_ranker("ensemble", llm_asked=True, llm_fallback=None, ensemble_failure="ensemble failed: boom")

    assert decision == ("gap_x_rvol", "ensemble failed: boom")


def test_the_quant_method_trades_the_quant_ranker_with_no_fallback_even_when_quarantined():
    decision = choose_ranker("quant", llm_asked=False, llm_fallback=None, ensemble_failure=None, quarantined="bad")

    assert decision == ("gap_x_rvol", None)


def test_a_quarantined_method_ranker_gives_the_reason_of_its_verdict():
    verdicts = {
        "llm": (State.THROTTLED, State.QUARANTINED, "expectancy -0.8%"),
        "ensemble": (State.ACTIVE, State.ACTIVE, ""),
    }

    assert quarantine_reason(verdicts, "llm") == "expectancy -0.8%"
    assert quarantine_reason(verdicts, "ensemble") is None


def test_a_throttled_ranker_is_not_quarantined():
    verdicts = {"gap_x_rvol": (State.ACTIVE, State.THROTTLED, "win rate 30%")}

    assert quarantine_reason(verdicts, "quant") is None


# the LLM's time budget


def test_far_from_the_moo_the_llm_gets_its_configured_budget():
    assert llm_time_budget(MOO - timedelta(hours=1), MOO, budget_s=60.0) == 60.0


def test_near_the_moo_the_budget_ends_the_margin_before_the_moo_orders():
    now = MOO - MOO_MARGIN - timedelta(seconds=20)

    assert llm_time_budget(now, MOO, budget_s=60.0) == 20.0


def test_the_llm_is_not_asked_with_less_than_the_minimum_budget_left():
    now = MOO - MOO_MARGIN - timedelta(seconds=MIN_LLM_BUDGET_S - 1)

    assert llm_time_budget(now, MOO, budget_s=60.0) is None


def test_the_llm_is_asked_with_exactly_the_minimum_budget_left():
    now = MOO - MOO_MARGIN - timedelta(seconds=MIN_LLM_BUDGET_S)

    assert llm_time_budget(now, MOO, budget_s=60.0) == MIN_LLM_BUDGET_S


def test_the_llm_is_not_asked_after_the_moo():
    assert llm_time_budget(MOO + timedelta(minutes=1), MOO, budget_s=60.0) is None


def test_too_close_to_the_moo_says_when_the_orders_go_out_and_how_long_was_left():
    assert too_close_to_moo(MOO - MOO_MARGIN - timedelta(seconds=3), MOO) == (
        "too close to the market-on-open orders at 09:28 to ask the LLM (3 s left)"
    )
    assert too_close_to_moo(MOO, MOO).endswith("(0 s left)")


def test_a_fallen_back_llm_outcome_has_no_scores_to_record():
    assert LlmOutcome("key", fallback_reason="no reply", scores={"AAA": 0.9}).used_scores is None
    assert LlmOutcome("key", scores={"AAA": 0.9}).used_scores == {"AAA": 0.9}


# the rows recorded


def test_score_rows_leave_out_the_llm_when_its_ranking_was_not_used():
    by_ranker = {"gap_x_rvol": [pick("AAA", 1, 30.0)], "llm": [pick("AAA", 1, 30.0)]}

    rows = score_rows(DAY, RUN, by_ranker, None, None)

    assert [(r["ranker"], r["symbol"], r["score"], r["rank"]) for r in rows] == [("gap_x_rvol", "AAA", 30.0, 1)]


def test_score_rows_take_the_llms_own_scores_and_leave_unscored_picks_unranked():
    by_ranker = {"llm": [pick("BBB", 1, 0.9), pick("AAA", 2, 0.0, selected=False)]}

    rows = score_rows(DAY, RUN, by_ranker, None, {"BBB": 0.9})

    assert [(r["symbol"], r["score"], r["rank"], r["note"]) for r in rows] == [
        ("BBB", 0.9, 1, "why BBB"),
        ("AAA", None, None, "why AAA"),
    ]
    assert all(r["trade_date"] == DAY and r["run_id"] == RUN for r in rows)


def test_score_rows_rank_each_voters_scores_and_say_why_a_voter_gave_none():
    votes = pd.DataFrame({name: [0.2, 0.7] for name in VOTERS}, index=pd.Index(["AAA", "BBB"], name="symbol"))
    votes.loc["AAA", "rsi"] = np.nan
    votes[EXCLUDED_COLUMN] = ["rsi: needs 15 daily closes, has 10", ""]

    rows = score_rows(DAY, RUN, {}, votes, None)

    assert [r["ranker"] for r in rows] == [name for name in VOTERS for _ in range(2)]
    rsi = {r["symbol"]: (r["score"], r["rank"], r["note"]) for r in rows if r["ranker"] == "rsi"}
    assert rsi == {"AAA": (None, None, "rsi: needs 15 daily closes, has 10"), "BBB": (0.7, 1, "")}
    momentum = {r["symbol"]: r["rank"] for r in rows if r["ranker"] == "momentum"}
    assert momentum == {"AAA": 2, "BBB": 1}


def test_ranking_rows_record_every_pick_under_the_ranker_that_trades():
    rows = ranking_rows(DAY, RUN, "llm", [pick("BBB", 1, 0.9), pick("AAA", 2, 0.0, selected=False)])

    assert [(r["ranker"], r["rank"], r["symbol"], r["selected"]) for r in rows] == [
        ("llm", 1, "BBB", True),
        ("llm", 2, "AAA", False),
    ]


def test_ranker_state_rows_carry_each_rankers_record_and_zeros_without_one():
    verdicts = {
        "gap_x_rvol": (State.ACTIVE, State.ACTIVE, "too little history"),
        "llm": (State.ACTIVE, State.QUARANTINED, "expectancy -0.8%"),
    }
    records = {"llm": RankerRecord("llm", 12, 15, 0.3, -0.8, -0.2)}

    rows = {r["ranker"]: r for r in ranker_state_rows(DAY, RUN, verdicts, records)}

    assert rows["llm"] == {
        "trade_date": DAY, "ranker": "llm", "state": "quarantined", "previous_state": "active",
        "reason": "expectancy -0.8%", "sessions": 12, "trades": 15, "win_rate": 0.3, "expectancy_pct": -0.8,
        "spearman": -0.2, "run_id": RUN,
    }  # fmt: skip
    no_record = rows["gap_x_rvol"]
    assert (no_record["sessions"], no_record["trades"], no_record["win_rate"], no_record["spearman"]) == (0, 0, None, None)
