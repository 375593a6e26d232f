"""Live against replayed: the trade-by-trade rows and the within-5% verdict."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd

from openbell.core.reconcile import reconcile_trades


def trades(*rows: tuple) -> pd.DataFrame:
    columns = ["symbol", "shares", "entry_price", "exit_price", "exit_reason", "commission", "pnl"]
    return pd.DataFrame([dict(zip(columns, r, strict=True)) for r in rows], columns=columns)


LIVE = trades(
    ("AAA", 100, Decimal("10.00"), Decimal("10.26"), "target", Decimal("0"), Decimal("26.00")),
    ("BBB", 50, Decimal("20.02"), Decimal("19.84"), "stop", Decimal("0"), Decimal("-9.00")),
    ("CCC", 10, Decimal("5.00"), Decimal("5.10"), "eod", Decimal("0"), Decimal("1.00")),
)
REPLAYED = trades(
    ("AAA", 100, Decimal("10.00"), Decimal("10.26"), "target", Decimal("2"), Decimal("24.00")),
    ("BBB", 50, Decimal("20.00"), Decimal("19.82"), "stop", Decimal("2"), Decimal("-11.00")),
    ("DDD", 30, Decimal("7.00"), Decimal("7.00"), "eod", Decimal("2"), Decimal("-2.00")),
)


def test_each_symbol_traded_on_either_side_is_one_row_with_its_difference():
    result = reconcile_trades(LIVE, REPLAYED)

    assert list(result.rows["symbol"]) == ["AAA", "BBB", "CCC", "DDD"]
    assert list(result.rows["pnl_diff"]) == [Decimal(2), Decimal(2), Decimal(1), Decimal(2)]
    assert result.only_live == ["CCC"] and result.only_replayed == ["DDD"]
    assert (result.live_pnl, result.replayed_pnl, result.difference) == (Decimal(18), Decimal(11), Decimal(7))


def test_the_verdict_is_the_difference_against_5_percent_of_the_replayed_pnl():
    far = reconcile_trades(LIVE, REPLAYED)
    assert not far.within and "NOT within 5%" in far.verdict() and "63.6%" in far.verdict()

    near = reconcile_trades(LIVE.iloc[:1], trades(("AAA", 100, Decimal("10.00"), Decimal("10.26"), "target",
                                                    Decimal("1.00"), Decimal("25.00"))))  # fmt: skip
    assert (near.difference, near.difference_pct, near.within) == (Decimal(1), Decimal(4), True)
    just_over = reconcile_trades(LIVE.iloc[:1], trades(("AAA", 100, Decimal("10.00"), Decimal("10.26"), "target",
                                                        Decimal("1.25"), Decimal("24.75"))))  # fmt: skip
    assert not just_over.within  # 1.25 is 5.05% of 24.75
    assert reconcile_trades(LIVE, LIVE).within and reconcile_trades(LIVE, LIVE).difference == 0


def test_a_day_with_no_replayed_pnl_is_within_only_when_equal():
    flat = trades(("AAA", 100, Decimal("10"), Decimal("10"), "eod", Decimal(0), Decimal(0)))
    assert reconcile_trades(flat, flat).within
    assert not reconcile_trades(LIVE.iloc[:1], flat).within
