"""Position sizing: whole shares from an allocation or a share of equity, within the caps."""

from __future__ import annotations

from decimal import Decimal

import pytest

from openbell.core.sizing import SizingPolicy, size_position

D = Decimal
EQUITY = D(100_000)


def test_default_allocation_is_ten_thousand_dollars_rounded_down_to_whole_shares():
    size = size_position("AAPL", D("33.00"), EQUITY, SizingPolicy())

    assert (size.shares, size.notional, size.skipped_reason) == (303, D("9999.00"), None)  # 10,000 / 33 = 303.03


def test_allocation_that_divides_exactly_buys_every_share():
    size = size_position("AAPL", D("25.00"), EQUITY, SizingPolicy(allocation=D(5_000)))

    assert (size.shares, size.notional) == (200, D("5000.00"))


def test_allocation_never_rounds_up_to_the_next_share():
    size = size_position("AAPL", D("10.01"), EQUITY, SizingPolicy(allocation=D(1_000)))

    assert size.shares == 99  # 1,000 / 10.01 = 99.9


def test_pct_of_equity_sizes_from_equity_instead_of_allocation():
    policy = SizingPolicy(allocation=D(10_000), pct_of_equity=D(5))

    size = size_position("MSFT", D("10.00"), D(50_000), policy)

    assert size.shares == 250  # 5% of 50,000 = 2,500


def test_max_shares_caps_the_share_count():
    size = size_position("F", D("1.00"), EQUITY, SizingPolicy(max_shares=500))

    assert (size.shares, size.notional) == (500, D("500.00"))


def test_max_notional_caps_the_budget():
    size = size_position("F", D("7.00"), EQUITY, SizingPolicy(max_notional=D(3_000)))

    assert (size.shares, size.notional) == (428, D("2996.00"))  # 3,000 / 7 = 428.6


def test_max_notional_caps_a_pct_of_equity_budget():
    policy = SizingPolicy(pct_of_equity=D(10), max_notional=D(20_000))

    size = size_position("NVDA", D("100.00"), D(1_000_000), policy)

    assert size.shares == 200


def test_the_tighter_of_max_shares_and_max_notional_wins():
    policy = SizingPolicy(max_shares=100, max_notional=D(5_000))

    size = size_position("T", D("20.00"), EQUITY, policy)

    assert size.shares == 100  # notional allows 250


def test_sub_dollar_price_buys_many_whole_shares():
    size = size_position("PENNY", D("0.7777"), EQUITY, SizingPolicy())

    assert (size.shares, size.notional) == (12_858, D("9999.6666"))  # 10,000 / 0.7777 = 12858.4


def test_pick_below_one_share_is_skipped_with_a_reason():
    size = size_position("BRK.A", D("700000.00"), EQUITY, SizingPolicy())

    assert (size.shares, size.notional) == (0, D(0))
    assert size.skipped_reason is not None and "less than one share" in size.skipped_reason


def test_non_positive_reference_price_is_skipped_with_a_reason():
    size = size_position("BAD", D(0), EQUITY, SizingPolicy())

    assert size.shares == 0
    assert size.skipped_reason is not None and "not positive" in size.skipped_reason


def test_sized_position_keeps_symbol_and_reference_price():
    size = size_position("AAPL", D("33.00"), EQUITY, SizingPolicy())

    assert (size.symbol, size.ref_price) == ("AAPL", D("33.00"))


@pytest.mark.parametrize(
    "fields",
    [
        {"allocation": D(0)},
        {"allocation": D(-1)},
        {"pct_of_equity": D(0)},
        {"pct_of_equity": D("100.01")},
        {"pct_of_equity": D(-5)},
        {"max_shares": 0},
        {"max_notional": D(0)},
        {"max_notional": D(-100)},
    ],
    ids=lambda fields: ",".join(f"{k}={v}" for k, v in fields.items()),
)
def test_invalid_policy_raises_value_error(fields):
    with pytest.raises(ValueError):
        SizingPolicy(**fields)


def test_pct_of_equity_of_one_hundred_is_valid():
    assert SizingPolicy(pct_of_equity=D(100)).pct_of_equity == D(100)
