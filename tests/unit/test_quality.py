"""Ranking quality: realised returns from minute bars and Spearman's rank correlation, worked out by hand."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pandas as pd
import pytest

from openbell.calendar import NEW_YORK
from openbell.core.quality import ranking_quality, realised_returns, spearman

OPEN = datetime(2025, 3, 7, 9, 30, tzinfo=NEW_YORK)
CLOSE = datetime(2025, 3, 7, 16, 0, tzinfo=NEW_YORK)


def bar(symbol: str, minute: int, o: float, h: float, l: float, c: float) -> dict:
    return dict(symbol=symbol, ts=OPEN + timedelta(minutes=minute), open=o, high=h, low=l, close=c, volume=100)


def series(**values: float) -> pd.Series:
    return pd.Series(values, dtype=float)


def test_realised_returns_use_the_first_open_last_close_and_highest_high_of_the_session():
    bars = pd.DataFrame(
        [
            bar("AAA", -5, 1.0, 99.0, 1.0, 1.0),  # pre-market: ignored
            bar("AAA", 0, 10.0, 10.5, 9.9, 10.2),
            bar("AAA", 1, 10.2, 12.0, 10.1, 11.0),
            bar("AAA", 389, 11.0, 11.2, 10.8, 10.8),
            bar("AAA", 390, 11.0, 50.0, 10.0, 20.0),  # after the close: ignored
        ]
    )

    out = realised_returns(bars, OPEN, CLOSE)

    assert out.loc["AAA", "open_close_pct"] == pytest.approx(8.0)
    assert out.loc["AAA", "open_high_pct"] == pytest.approx(20.0)


def test_realised_returns_order_bars_by_time_whatever_the_input_order():
    bars = pd.DataFrame([bar("BBB", 10, 21.0, 21.0, 19.0, 19.0), bar("BBB", 0, 20.0, 20.0, 20.0, 20.0)])

    out = realised_returns(bars, OPEN, CLOSE)

    assert out.loc["BBB", "open_close_pct"] == pytest.approx(-5.0)
    assert out.loc["BBB", "open_high_pct"] == pytest.approx(5.0)


def test_spearman_matches_the_textbook_formula_without_ties():
    x = series(A=0.9, B=0.1, C=0.5, D=0.7, E=0.3)
    y = series(A=4.0, B=-1.0, C=3.0, D=1.0, E=0.5)
    # ranks x: A5 B1 C3 D4 E2; y: A5 B1 C4 D3 E2 -> d^2 = 0+0+1+1+0 = 2
    expected = 1 - 6 * 2 / (5 * (5**2 - 1))

    n, rho = spearman(x, y)

    assert n == 5
    assert rho == pytest.approx(expected)


def test_spearman_is_one_for_the_same_order_and_minus_one_for_the_reverse():
    x = series(A=1, B=2, C=3, D=4)
    assert spearman(x, series(A=10, B=20, C=30, D=400))[1] == pytest.approx(1.0)
    assert spearman(x, series(A=4, B=3, C=2, D=1))[1] == pytest.approx(-1.0)


def test_spearman_gives_ties_their_average_rank():
    # x ranks: A 1.5, B 1.5, C 3; y ranks 1, 2, 3 -> Pearson of (1.5, 1.5, 3) and (1, 2, 3)
    n, rho = spearman(series(A=0, B=0, C=1), series(A=1, B=2, C=3))

    assert n == 3
    assert rho == pytest.approx(0.8660254, abs=1e-7)


def test_spearman_uses_only_labels_both_sides_have():
    n, rho = spearman(series(A=1, B=2, C=3, X=float("nan")), series(A=1, B=2, C=3, D=9))

    assert n == 3
    assert rho == pytest.approx(1.0)


@pytest.mark.parametrize(
    "x, y",
    [
        (series(A=1, B=2), series(A=1, B=2)),  # too few points
        (series(A=1, B=1, C=1), series(A=1, B=2, C=3)),  # no spread in the scores
    ],
)
def test_spearman_is_nan_when_it_cannot_say_anything(x, y):
    assert math.isnan(spearman(x, y)[1])


def test_ranking_quality_scores_every_ranker_on_both_horizons():
    realised = pd.DataFrame(
        {"open_close_pct": [3.0, 2.0, 1.0], "open_high_pct": [1.0, 2.0, 3.0]},
        index=pd.Index(["A", "B", "C"], name="symbol"),
    )
    scores = pd.DataFrame(
        [("good", "A", 0.9), ("good", "B", 0.5), ("good", "C", 0.1), ("half", "A", 0.2), ("half", "B", float("nan"))],
        columns=["ranker", "symbol", "score"],
    )

    out = ranking_quality(scores, realised).set_index(["ranker", "horizon"])

    assert out.loc[("good", "open_close"), "spearman"] == pytest.approx(1.0)
    assert out.loc[("good", "open_high"), "spearman"] == pytest.approx(-1.0)
    assert out.loc[("good", "open_close"), "n"] == 3
    assert out.loc[("half", "open_close"), "n"] == 1
    assert math.isnan(out.loc[("half", "open_close"), "spearman"])
