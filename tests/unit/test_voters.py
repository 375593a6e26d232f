"""The ensemble of voters: each voter on hand-made closes, the arithmetic of combining, the ranker."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from openbell.core.ranking import Ranker
from openbell.core.voters import (
    EXCLUDED_COLUMN,
    VOTERS,
    EnsembleRanker,
    combine,
    consensus,
    macd,
    macd_histogram,
    mean_reversion,
    momentum,
    rsi,
    sma_trend,
    vote,
    wilder_rsi,
)

DATES = [d.date() for d in pd.bdate_range(end="2025-03-07", periods=80)]


def bars(closes_by_symbol: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for symbol, closes in closes_by_symbol.items():
        for day, close in zip(DATES[-len(closes) :], closes):
            rows.append(dict(symbol=symbol, date=day, open=close, high=close, low=close, close=close, volume=1_000))
    return pd.DataFrame(rows, columns=["symbol", "date", "open", "high", "low", "close", "volume"])


def candidates(*symbols: str, gap=None, rvol=None, passed=None) -> pd.DataFrame:
    n = len(symbols)
    return pd.DataFrame(
        dict(
            symbol=list(symbols),
            gap_pct=gap if gap is not None else [5.0] * n,
            rel_volume=rvol if rvol is not None else [2.0] * n,
            passed=passed if passed is not None else [True] * n,
            reject_reason=[None] * n,
        )
    )


def rising(n: int, start: float = 100.0) -> list[float]:
    return [start + k for k in range(n)]


def flat_then(n_flat: int, tail: list[float], level: float = 100.0) -> list[float]:
    return [level] * n_flat + tail


# --- momentum -------------------------------------------------------------------------------


def test_momentum_min_max_scales_gap_times_relative_volume():
    # raw = 2x1 = 2, 4x2 = 8, 3x2 = 6 -> (raw - 2) / 6
    cands = candidates("AAA", "BBB", "CCC", gap=[2.0, 4.0, 3.0], rvol=[1.0, 2.0, 2.0])

    scores = momentum(cands, bars({}))

    assert scores.to_dict() == pytest.approx({"AAA": 0.0, "BBB": 1.0, "CCC": 4 / 6})


def test_momentum_is_neutral_when_candidates_have_no_spread():
    scores = momentum(candidates("AAA"), bars({}))

    assert scores.to_dict() == {"AAA": 0.5}


# --- rsi --------------------------------------------------------------------------------------


def test_rsi_of_a_strictly_rising_series_is_100():
    scores = rsi(candidates("AAA"), bars({"AAA": rising(15)}))

    assert scores["AAA"] == 1.0


def test_rsi_of_a_flat_series_is_50():
    assert wilder_rsi(np.full(20, 10.0)) == 50.0


def test_rsi_matches_the_textbook_example():
    # StockCharts' RSI example: gains over the first 14 changes sum to 3.34, losses to 1.40, so
    # RS = (3.34/14) / (1.40/14) = 2.3857 and RSI = 100 - 100/3.3857 = 70.46 (their table prints
    # 70.53 because it rounds the averages to 0.24 and 0.10 first).
    closes = [44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03, 45.61, 46.28, 46.28]

    assert wilder_rsi(np.array(closes)) == pytest.approx(70.464, abs=1e-3)


def test_rsi_applies_wilder_smoothing_after_the_first_average():
    # period 2 on 10, 12, 11, 14: first averages gain (2+0)/2 = 1, loss (0+1)/2 = 0.5;
    # then gain (1x1 + 3)/2 = 2, loss (0.5x1 + 0)/2 = 0.25: RS 8, RSI = 100 - 100/9.
    assert wilder_rsi(np.array([10.0, 12.0, 11.0, 14.0]), period=2) == pytest.approx(100 - 100 / 9)


# --- macd -------------------------------------------------------------------------------------


def test_macd_histogram_is_positive_when_prices_turn_up_and_negative_when_they_turn_down():
    up = np.array(flat_then(30, rising(10, start=101.0)))
    down = np.array(flat_then(30, [99.0 - k for k in range(10)]))

    assert macd_histogram(up) > 0
    assert macd_histogram(down) < 0


def test_macd_scores_above_half_for_an_up_turn_below_for_a_down_turn_and_half_when_flat():
    daily = bars(
        {
            "UP": flat_then(30, rising(10, start=101.0)),
            "DOWN": flat_then(30, [99.0 - k for k in range(10)]),
            "FLAT": [100.0] * 40,
        }
    )

    scores = macd(candidates("UP", "DOWN", "FLAT"), daily)

    assert scores["UP"] > 0.5 > scores["DOWN"]
    assert scores["FLAT"] == 0.5


# --- sma_trend --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("closes", "expected"),
    [
        # 30 at 100 then 20 at 110: SMA50 = 106, SMA20 = 110; close 110 is not above SMA20, SMA20 > SMA50
        (flat_then(30, [110.0] * 20), 0.5),
        # as above but the last close is 120: SMA20 = 110.5 > 106 and 120 > 110.5
        (flat_then(30, [110.0] * 19 + [120.0]), 1.0),
        # mirror: 30 at 100 then 20 at 90, last 80: close below SMA20, SMA20 below SMA50
        (flat_then(30, [90.0] * 19 + [80.0]), 0.0),
        # 30 at 100 then 20 at 90 with last 100: close 100 > SMA20 90.5, SMA20 < SMA50
        (flat_then(30, [90.0] * 19 + [100.0]), 0.5),
    ],
)
def test_sma_trend_counts_close_over_sma20_and_sma20_over_sma50(closes, expected):
    scores = sma_trend(candidates("AAA"), bars({"AAA": closes}))

    assert scores["AAA"] == expected


# --- mean_reversion ---------------------------------------------------------------------------


def test_mean_reversion_scores_an_oversold_close_high():
    # 19 closes alternate 99/101 then 90: mean 99.5 (approx), close far below -> z << 0 -> score near 1
    closes = [99.0 if k % 2 else 101.0 for k in range(19)] + [90.0]

    scores = mean_reversion(candidates("AAA"), bars({"AAA": closes}))

    window = np.array(closes)
    z = (90.0 - window.mean()) / window.std(ddof=1)
    assert scores["AAA"] == pytest.approx(1 / (1 + math.exp(z)))
    assert scores["AAA"] > 0.9


def test_mean_reversion_is_neutral_when_the_last_20_closes_are_equal():
    scores = mean_reversion(candidates("AAA"), bars({"AAA": [100.0] * 20}))

    assert scores["AAA"] == 0.5


# --- vote: too little history ------------------------------------------------------------------


def test_vote_excludes_voters_with_too_little_history_and_says_why():
    daily = bars({"AAA": rising(60), "BBB": rising(10)})

    votes = vote(candidates("AAA", "BBB"), daily)

    assert list(votes.columns) == [*VOTERS, EXCLUDED_COLUMN]
    assert votes.loc["AAA", list(VOTERS)].notna().all()
    assert votes.loc["AAA", EXCLUDED_COLUMN] == ""
    assert votes.loc["BBB", ["rsi", "macd", "sma_trend", "mean_reversion"]].isna().all()
    assert votes.loc["BBB", "momentum"] == 0.5
    assert "rsi: needs 15 daily closes, has 10" in votes.loc["BBB", EXCLUDED_COLUMN]
    assert "sma_trend: needs 50 daily closes, has 10" in votes.loc["BBB", EXCLUDED_COLUMN]


def test_vote_gives_nan_for_a_candidate_without_daily_bars():
    votes = vote(candidates("AAA"), bars({}), {"rsi": rsi})

    assert math.isnan(votes.loc["AAA", "rsi"])
    assert votes.loc["AAA", EXCLUDED_COLUMN] == "rsi: needs 15 daily closes, has 0"


# --- combine and consensus --------------------------------------------------------------------


def score_table(rows: dict[str, dict[str, float]]) -> pd.DataFrame:
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("symbol")
    table[EXCLUDED_COLUMN] = ""
    return table


def test_combine_is_the_weighted_mean_of_available_scores():
    votes = score_table({"AAA": {"a": 1.0, "b": 0.0, "c": 0.5}, "BBB": {"a": 0.2, "b": np.nan, "c": 0.8}})

    combined = combine(votes, {"a": 2.0, "b": 1.0, "c": 1.0})

    # AAA: (2x1 + 0 + 0.5) / 4; BBB skips b: (2x0.2 + 0.8) / 3
    assert combined.to_dict() == pytest.approx({"AAA": 2.5 / 4, "BBB": 1.2 / 3})


def test_combine_is_nan_when_no_weighted_voter_scored():
    votes = score_table({"AAA": {"a": np.nan, "b": 0.9}})

    combined = combine(votes, {"a": 1.0, "b": 0.0})

    assert math.isnan(combined["AAA"])


def test_combine_rejects_weights_for_voters_that_did_not_vote():
    with pytest.raises(ValueError, match="did not vote"):
        combine(score_table({"AAA": {"a": 1.0}}), {"zzz": 1.0})


def test_consensus_needs_k_voters_at_or_above_the_threshold():
    votes = score_table(
        {
            "AAA": {"a": 0.5, "b": 0.7, "c": 0.1},  # two at or above 0.5
            "BBB": {"a": 0.49, "b": np.nan, "c": 0.9},  # one; NaN does not agree
        }
    )

    agreed = consensus(votes, k=2)

    assert agreed.to_dict() == {"AAA": True, "BBB": False}


def test_consensus_rejects_k_larger_than_the_number_of_voters():
    with pytest.raises(ValueError, match="1 <= k <= 3"):
        consensus(score_table({"AAA": {"a": 1.0, "b": 1.0, "c": 1.0}}), k=4)


# --- EnsembleRanker ---------------------------------------------------------------------------


def ranker_inputs():
    # Only momentum and sma_trend vote (weights below), so every score is worked out by hand:
    # momentum raw = gap x 1: AAA 4 -> 1.0, BBB 2 -> 0.0, CCC 3 -> 0.5, DDD 3 -> 0.5
    # sma_trend: AAA and BBB rise (1.0), CCC and DDD are flat (0.0)
    daily = bars({"AAA": rising(50), "BBB": rising(50), "CCC": [100.0] * 50, "DDD": [100.0] * 50})
    cands = candidates("DDD", "CCC", "BBB", "AAA", gap=[3.0, 3.0, 2.0, 4.0], rvol=[1.0] * 4)
    return cands, daily


def test_ensemble_ranker_orders_by_weighted_score_and_breaks_ties_by_symbol():
    cands, daily = ranker_inputs()
    ranker = EnsembleRanker({"momentum": 1.0, "sma_trend": 1.0}, daily=daily)

    picks = ranker.rank(cands, top_n=2)

    # AAA (1+1)/2 = 1.0, BBB (0+1)/2 = 0.5, CCC and DDD (0.5+0)/2 = 0.25 tie -> by symbol
    assert [(p.symbol, p.rank, p.score) for p in picks] == [
        ("AAA", 1, 1.0),
        ("BBB", 2, 0.5),
        ("CCC", 3, 0.25),
        ("DDD", 4, 0.25),
    ]
    assert [p.selected for p in picks] == [True, True, False, False]


def test_ensemble_ranker_explains_each_voters_score():
    cands, daily = ranker_inputs()

    picks = EnsembleRanker({"momentum": 1.0, "sma_trend": 1.0}, daily=daily).rank(cands, top_n=1)

    assert picks[0].reason == "momentum 1.00, sma_trend 1.00 → 1.00"


def test_ensemble_ranker_ignores_candidates_that_failed_the_scan():
    cands, daily = ranker_inputs()
    cands["passed"] = [True, True, True, False]  # AAA failed

    picks = EnsembleRanker({"momentum": 1.0, "sma_trend": 1.0}, daily=daily).rank(cands, top_n=5)

    assert [p.symbol for p in picks] == ["BBB", "CCC", "DDD"]


def test_ensemble_ranker_with_min_agree_selects_only_candidates_with_consensus():
    cands, daily = ranker_inputs()
    ranker = EnsembleRanker({"momentum": 1.0, "sma_trend": 1.0}, min_agree=2, daily=daily)

    picks = ranker.rank(cands, top_n=2)

    # agreeing at >= 0.5: AAA both, BBB only sma_trend, CCC/DDD only momentum
    assert [(p.symbol, p.selected) for p in picks] == [("AAA", True), ("BBB", False), ("CCC", False), ("DDD", False)]
    assert "only 1 of 2 voters >= 0.50, needs 2" in picks[1].reason


def test_ensemble_ranker_runs_every_voter_by_default_and_satisfies_the_ranker_protocol():
    daily = bars({"AAA": rising(60), "BBB": [100.0] * 60})
    ranker: Ranker = EnsembleRanker(daily=daily)

    picks = ranker.rank(candidates("AAA", "BBB"), top_n=1)

    assert ranker.name == "ensemble"
    assert [p.symbol for p in picks] == ["AAA", "BBB"]
    assert picks[0].reason.startswith("momentum 0.50, rsi 1.00, macd ")
    assert "sma_trend 1.00, mean_reversion " in picks[0].reason


def test_ensemble_ranker_is_deterministic_whatever_the_row_order():
    cands, daily = ranker_inputs()
    ranker = EnsembleRanker(daily=daily.sample(frac=1.0, random_state=7))

    first = ranker.rank(cands, top_n=2)
    second = ranker.rank(cands.sample(frac=1.0, random_state=11), top_n=2)

    assert first == second


def test_ensemble_ranker_rejects_unknown_voters_and_impossible_min_agree():
    with pytest.raises(ValueError, match="Unknown voters"):
        EnsembleRanker({"astrology": 1.0}, daily=bars({}))
    with pytest.raises(ValueError, match="min_agree"):
        EnsembleRanker({"rsi": 1.0}, min_agree=2, daily=bars({}))


def test_ensemble_ranker_weighs_an_external_voter_like_its_own():
    cands, daily = ranker_inputs()
    llm = pd.Series({"DDD": 1.0, "CCC": 0.0})  # the LLM saw only CCC and DDD
    ranker = EnsembleRanker({"momentum": 1.0, "llm": 3.0}, daily=daily, external={"llm": llm})

    picks = ranker.rank(cands, top_n=1)

    # DDD (0.5 + 3 x 1) / 4 = 0.875; AAA 1.0 and BBB 0.0 have momentum only; CCC (0.5 + 0) / 4 = 0.125
    assert [(p.symbol, p.score) for p in picks] == [("AAA", 1.0), ("DDD", 0.875), ("CCC", 0.125), ("BBB", 0.0)]
    assert ranker.votes.loc["DDD", "llm"] == 1.0 and math.isnan(ranker.votes.loc["AAA", "llm"])


def test_ensemble_ranker_says_why_an_external_voter_gave_no_score():
    cands, daily = ranker_inputs()
    ranker = EnsembleRanker(
        {"momentum": 1.0, "llm": 1.0},
        daily=daily,
        external={"llm": pd.Series(dtype=float)},
        missing_notes={"llm": "llm: fell back (timeout)"},
    )

    picks = ranker.rank(cands, top_n=1)

    assert picks[0].reason == "momentum 1.00, llm n/a → 1.00 (llm: fell back (timeout))"


def test_ensemble_consensus_counts_the_external_voter():
    cands, daily = ranker_inputs()
    llm = pd.Series({"AAA": 0.0, "BBB": 0.9, "CCC": 0.9, "DDD": 0.1})
    ranker = EnsembleRanker({"sma_trend": 1.0, "llm": 1.0}, min_agree=2, daily=daily, external={"llm": llm})

    picks = ranker.rank(cands, top_n=5)

    # at >= 0.5 both agree only on BBB (sma_trend 1.0, llm 0.9)
    assert [p.symbol for p in picks if p.selected] == ["BBB"]
