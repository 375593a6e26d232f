"""The pre-market scan (features, data-quality gate, filters) and the ranking baseline.

The daily bars are hand made so every feature can be worked out on paper:

AAA, 25 sessions. Session k's "level" is 20 when k is even, 22 when odd; open = close = level.
- sessions 0-10 have a wide range (level +/- 5); sessions 11-24 have high/low 21/19 on even
  sessions and 23/21.5 on odd ones. Every true range of 11-24 is 3 (the move from the previous
  close), although high - low is only 2 or 1.5: atr14 = 3, and any other window would see the
  wide bars.
- volume is 9,999,999 in sessions 0-4 (outside the last 20), then 300,000 on even and 480,000
  on odd sessions: avg_volume_20 = 390,000, i.e. 1,000 shares a minute; avg dollar volume =
  (20 x 300,000 + 22 x 480,000) / 2 = 8,280,000.
- the last session (24) is even: prior close 20. Five sessions earlier (19, odd) closed at 22,
  twenty earlier (4, even) at 20: ret_5d_pct = 20/22 - 1 = -9.09%, ret_20d_pct = 0; the last
  bar's range is (21 - 19) / 20 = 10%.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from openbell.core.ranking import GapVolumeRanker, fixed_ranking
from openbell.core.scan import FEATURE_COLUMNS, ScanFilters, apply_filters, scan_features

SESSIONS = [d.date() for d in pd.bdate_range(end="2025-03-07", periods=25)]
PRIOR = SESSIONS[-1]


def aaa_bars(symbol: str = "AAA") -> list[dict]:
    rows = []
    for k, day in enumerate(SESSIONS):
        level = 20.0 if k % 2 == 0 else 22.0
        if k <= 10:
            high, low = level + 5, level - 5
        else:
            high, low = (21.0, 19.0) if k % 2 == 0 else (23.0, 21.5)
        volume = 9_999_999 if k < 5 else (300_000 if k % 2 == 0 else 480_000)
        rows.append(dict(symbol=symbol, date=day, open=level, high=high, low=low, close=level, volume=volume))
    return rows


def steady_bars(symbol: str, price: float = 50.0, volume: int = 1_000_000, sessions: list[date] = SESSIONS) -> list[dict]:
    return [
        dict(symbol=symbol, date=day, open=price, high=price + 1, low=price - 1, close=price, volume=volume)
        for day in sessions
    ]


def daily_frame(*groups: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for group in groups for row in group])


def opening_frame(*rows: tuple[str, float, int]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["symbol", "open", "volume"])


def features_of(daily: pd.DataFrame, opening: pd.DataFrame, **kwargs) -> pd.DataFrame:
    return scan_features(daily, opening, PRIOR, **kwargs).set_index("symbol")


@pytest.fixture
def aaa() -> pd.Series:
    return features_of(daily_frame(aaa_bars()), opening_frame(("AAA", 21.0, 2_500))).loc["AAA"]


# -- features ---------------------------------------------------------------------------------


def test_gap_pct_is_open_over_prior_close(aaa):
    assert aaa["prior_close"] == 20.0
    assert aaa["gap_pct"] == pytest.approx(5.0)  # 21 / 20 - 1


def test_atr14_is_mean_true_range_of_last_14_sessions_including_moves_from_prior_close(aaa):
    assert aaa["atr14"] == pytest.approx(3.0)


def test_atr_pct_is_atr_over_prior_close(aaa):
    assert aaa["atr_pct"] == pytest.approx(15.0)  # 3 / 20


def test_avg_volume_20_averages_only_the_last_20_sessions(aaa):
    assert aaa["avg_volume_20"] == pytest.approx(390_000)


def test_avg_dollar_volume_20_averages_close_times_volume(aaa):
    assert aaa["avg_dollar_volume_20"] == pytest.approx(8_280_000)


def test_rel_volume_is_open_volume_in_average_minutes(aaa):
    assert aaa["rel_volume"] == pytest.approx(2.5)  # 2,500 / (390,000 / 390)


def test_recent_returns_compare_the_prior_close_with_5_and_20_sessions_earlier(aaa):
    assert aaa["ret_5d_pct"] == pytest.approx((20 / 22 - 1) * 100)
    assert aaa["ret_20d_pct"] == pytest.approx(0.0)


def test_prior_range_pct_is_the_last_daily_bars_high_low_over_its_close(aaa):
    assert aaa["prior_range_pct"] == pytest.approx(10.0)


def test_recent_return_is_nan_without_enough_history():
    features = features_of(daily_frame(steady_bars("NEW", sessions=SESSIONS[-4:])), opening_frame(("NEW", 51.0, 100)))

    assert np.isnan(features.loc["NEW", "ret_5d_pct"])


def test_clean_symbol_passes_the_quality_gate(aaa):
    assert aaa["passed"] and pd.isna(aaa["reject_reason"])


def test_prior_close_override_takes_precedence_over_daily_close():
    features = features_of(
        daily_frame(aaa_bars()),
        opening_frame(("AAA", 21.0, 2_500)),
        prior_close_override=pd.Series({"AAA": 10.0}),
    )

    assert (features.loc["AAA", "prior_close"], features.loc["AAA", "gap_pct"]) == (10.0, pytest.approx(110.0))


def test_bars_after_the_prior_session_are_ignored():
    late = dict(symbol="AAA", date=date(2025, 3, 10), open=99.0, high=99.0, low=99.0, close=99.0, volume=1)

    features = features_of(daily_frame(aaa_bars(), [late]), opening_frame(("AAA", 21.0, 2_500)))

    assert (features.loc["AAA", "prior_close"], features.loc["AAA", "passed"]) == (20.0, True)


def test_features_have_one_row_per_opening_symbol_sorted_with_the_documented_columns():
    daily = daily_frame(aaa_bars("ZZZ"), aaa_bars("AAA"))

    features = scan_features(daily, opening_frame(("ZZZ", 21.0, 100), ("AAA", 21.0, 100)), PRIOR)

    assert list(features.columns) == FEATURE_COLUMNS
    assert features["symbol"].tolist() == ["AAA", "ZZZ"]


# -- data quality -----------------------------------------------------------------------------


def reason_of(daily: pd.DataFrame, symbol: str, open_price: float = 51.0) -> str:
    features = features_of(daily, opening_frame((symbol, open_price, 1_000)))
    assert not features.loc[symbol, "passed"]
    return features.loc[symbol, "reject_reason"]


def test_symbol_with_fewer_than_20_sessions_is_rejected():
    daily = daily_frame(steady_bars("NEW", sessions=SESSIONS[-19:]))

    assert "fewer than 20 sessions" in reason_of(daily, "NEW")


def test_symbol_with_exactly_20_sessions_passes():
    daily = daily_frame(steady_bars("NEW", sessions=SESSIONS[-20:]))

    features = features_of(daily, opening_frame(("NEW", 51.0, 1_000)))

    assert features.loc["NEW", "passed"]


def test_symbol_without_any_daily_history_is_rejected():
    daily = daily_frame(steady_bars("OLD"))

    assert "no daily history" in reason_of(daily, "GHOST")


def test_symbol_with_stale_last_bar_is_rejected():
    daily = daily_frame(steady_bars("STALE", sessions=SESSIONS[:-1]))

    assert "previous session" in reason_of(daily, "STALE")


@pytest.mark.parametrize(
    "bad",
    [dict(high=40.0, low=45.0), dict(close=0.0), dict(open=-1.0), dict(low=np.nan), dict(volume=-5)],
    ids=["high below low", "zero close", "negative open", "missing low", "negative volume"],
)
def test_symbol_with_a_bad_bar_in_the_last_20_sessions_is_rejected(bad):
    rows = steady_bars("BAD")
    rows[-3].update(bad)

    assert "invalid" in reason_of(daily_frame(rows), "BAD")


def test_bad_bar_older_than_the_last_20_sessions_is_ignored():
    rows = steady_bars("OLDBAD")
    rows[0].update(high=40.0, low=45.0)

    features = features_of(daily_frame(rows), opening_frame(("OLDBAD", 51.0, 1_000)))

    assert features.loc["OLDBAD", "passed"]


@pytest.mark.parametrize("open_price", [0.0, -1.0, np.nan])
def test_symbol_without_valid_opening_price_is_rejected(open_price):
    daily = daily_frame(steady_bars("NOOPEN"))

    assert "opening price" in reason_of(daily, "NOOPEN", open_price=open_price)


def test_one_bad_symbol_does_not_reject_its_neighbours():
    daily = daily_frame(steady_bars("GOOD"), steady_bars("NEW", sessions=SESSIONS[-5:]))

    features = features_of(daily, opening_frame(("GOOD", 51.0, 1_000), ("NEW", 51.0, 1_000)))

    assert features["passed"].to_dict() == {"GOOD": True, "NEW": False}


# -- filters ----------------------------------------------------------------------------------


def feature_row(symbol: str, **overrides) -> dict:
    row = dict(
        symbol=symbol,
        prior_close=50.0,
        open_price=52.0,
        gap_pct=4.0,
        atr14=1.0,
        atr_pct=2.0,
        avg_volume_20=1_000_000.0,
        rel_volume=3.0,
        avg_dollar_volume_20=50_000_000.0,
        passed=True,
        reject_reason=None,
    )
    row.update(overrides)
    return row


def filtered(*rows: dict, **filters) -> pd.DataFrame:
    return apply_filters(pd.DataFrame(rows), ScanFilters(**filters)).set_index("symbol")


def test_candidate_inside_every_filter_passes():
    out = filtered(feature_row("OK"))

    assert out.loc["OK", "passed"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (dict(open_price=1.50), "price below"),
        (dict(open_price=1_500.0), "price above"),
        (dict(avg_dollar_volume_20=1_000_000.0), "dollar volume below"),
        (dict(gap_pct=1.0), "gap below"),
        (dict(gap_pct=-3.0), "gap below"),
        (dict(gap_pct=60.0), "gap above"),
        (dict(rel_volume=0.5), "relative volume below"),
    ],
)
def test_candidate_outside_a_filter_is_rejected_with_the_reason(overrides, reason):
    out = filtered(feature_row("X", **overrides), min_rel_volume=1.0)

    assert (out.loc["X", "passed"], reason in out.loc["X", "reject_reason"]) == (False, True)


def test_filters_keep_the_quality_reject_reason():
    out = filtered(feature_row("Q", passed=False, reject_reason="no daily history", open_price=0.5))

    assert (out.loc["Q", "passed"], out.loc["Q", "reject_reason"]) == (False, "no daily history")


def test_filters_do_not_modify_their_input():
    features = pd.DataFrame([feature_row("X", gap_pct=1.0)])

    apply_filters(features, ScanFilters())

    assert features.loc[0, "passed"]


def test_scan_then_filters_end_to_end_on_hand_made_bars():
    daily = daily_frame(aaa_bars(), steady_bars("FLAT"))
    features = scan_features(daily, opening_frame(("AAA", 21.0, 2_500), ("FLAT", 50.0, 1_000)), PRIOR)

    out = apply_filters(features, ScanFilters()).set_index("symbol")

    assert out["passed"].to_dict() == {"AAA": True, "FLAT": False}
    assert out.loc["FLAT", "reject_reason"] == "gap below 2%"


# -- ranking ----------------------------------------------------------------------------------


def candidates(*rows: tuple[str, float, float, bool]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["symbol", "gap_pct", "rel_volume", "passed"])


def test_ranker_orders_by_gap_times_relative_volume():
    picks = GapVolumeRanker().rank(candidates(("A", 3.0, 2.0, True), ("B", 10.0, 1.0, True), ("C", 2.0, 8.0, True)), 3)

    assert [(p.symbol, p.rank, p.score) for p in picks] == [("C", 1, 16.0), ("B", 2, 10.0), ("A", 3, 6.0)]


def test_ranker_breaks_ties_by_symbol():
    picks = GapVolumeRanker().rank(candidates(("ZZ", 4.0, 2.0, True), ("AA", 2.0, 4.0, True), ("MM", 8.0, 1.0, True)), 3)

    assert [p.symbol for p in picks] == ["AA", "MM", "ZZ"]


def test_ranker_marks_only_the_top_n_selected():
    picks = GapVolumeRanker().rank(candidates(("A", 3.0, 1.0, True), ("B", 2.0, 1.0, True), ("C", 1.0, 1.0, True)), 2)

    assert [(p.symbol, p.selected) for p in picks] == [("A", True), ("B", True), ("C", False)]


def test_ranker_leaves_out_candidates_that_failed_the_scan():
    picks = GapVolumeRanker().rank(candidates(("A", 3.0, 1.0, True), ("B", 90.0, 9.0, False)), 5)

    assert [p.symbol for p in picks] == ["A"]


def test_ranker_explains_each_pick():
    [pick] = GapVolumeRanker().rank(candidates(("A", 3.0, 2.0, True)), 1)

    assert "gap" in pick.reason and "relative volume" in pick.reason


def test_ranker_returns_nothing_for_no_candidates():
    assert GapVolumeRanker().rank(candidates(), 5) == []


def test_fixed_ranking_keeps_the_given_order_and_drops_duplicates():
    picks = fixed_ranking(["MSFT", "AAPL", "MSFT", "TSLA"])

    assert [(p.symbol, p.rank, p.selected) for p in picks] == [("MSFT", 1, True), ("AAPL", 2, True), ("TSLA", 3, True)]
