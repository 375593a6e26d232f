"""Exact prices: the tick, half-up rounding, exit levels, slippage, commissions and the integer path."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from openbell.core.prices import (
    as_price,
    commission,
    exit_levels,
    price_to_units,
    round_to_tick,
    scaled_to_tick,
    tick_size,
    to_units,
    units_to_price,
    with_slippage,
)
from openbell.core.types import Side

D = Decimal


@pytest.mark.parametrize(
    ("price", "tick"),
    [("0.0001", "0.0001"), ("0.9999", "0.0001"), ("0.99999", "0.0001"), ("1", "0.01"), ("1.00", "0.01"), ("512.34", "0.01")],
)
def test_tick_is_a_cent_at_or_above_one_dollar_and_a_hundredth_of_a_cent_below(price, tick):
    assert tick_size(D(price)) == D(tick)


@pytest.mark.parametrize(
    ("price", "rounded"),
    [
        ("2.675", "2.68"),  # half rounds up, not to even
        ("2.665", "2.67"),
        ("2.6749", "2.67"),
        ("12.825", "12.83"),
        ("0.64125", "0.6413"),
        ("0.64115", "0.6412"),
        ("0.123449", "0.1234"),
    ],
)
def test_round_to_tick_rounds_halves_up(price, rounded):
    assert str(round_to_tick(D(price))) == rounded


def test_round_to_tick_takes_the_tick_from_the_unrounded_price_below_one_dollar():
    # 0.99995 is below $1, so it rounds on the $0.0001 grid: up to 1.0000, not down to 1.00 by luck
    assert str(round_to_tick(D("0.99995"))) == "1.0000"


def test_round_to_tick_takes_the_tick_from_the_unrounded_price_at_one_dollar():
    assert str(round_to_tick(D("1.00499"))) == "1.00"


def test_round_to_tick_keeps_sub_dollar_prices_on_the_subpenny_grid():
    assert str(round_to_tick(D("0.996"))) == "0.9960"


def test_as_price_rounds_a_float_through_its_shortest_repr():
    # 12.345 is 12.3449999... in binary; its repr "12.345" rounds half up to 12.35
    assert as_price(12.345) == D("12.35")


def test_as_price_cleans_float_noise():
    assert as_price(0.1 + 0.2) == D("0.3000")


def test_exit_levels_default_percentages_on_round_price():
    assert exit_levels(D("100.00"), D("2.6"), D("0.9")) == (D("102.60"), D("99.10"))


def test_exit_levels_round_target_half_up():
    assert exit_levels(D("12.50"), D("2.6"), D("0.9")) == (D("12.83"), D("12.39"))  # 12.825, 12.3875


def test_exit_levels_round_stop_half_up():
    assert exit_levels(D("15.00"), D("2.6"), D("0.9")) == (D("15.39"), D("14.87"))  # 15.39, 14.865


def test_exit_levels_below_one_dollar_use_the_subpenny_tick():
    assert exit_levels(D("0.7777"), D("2.6"), D("0.9")) == (D("0.7979"), D("0.7707"))  # 0.7979202, 0.7707007


def test_exit_levels_target_crossing_one_dollar_uses_the_cent_tick():
    assert exit_levels(D("0.9750"), D("2.6"), D("0.9")) == (D("1.00"), D("0.9662"))  # 1.00035, 0.966225


def test_slippage_makes_a_buy_dearer():
    assert with_slippage(D("100.00"), Side.BUY, D("10")) == D("100.10")


def test_slippage_makes_a_sell_cheaper():
    assert with_slippage(D("101.00"), Side.SELL, D("10")) == D("100.90")  # 100.899


def test_slipped_price_rounds_half_up():
    assert with_slippage(D("20.00"), Side.BUY, D("2.5")) == D("20.01")  # 20.005


def test_zero_slippage_still_rounds_to_the_tick():
    assert with_slippage(D("12.345"), Side.SELL, D(0)) == D("12.35")


@pytest.mark.parametrize(
    ("shares", "expected"),
    [(1, "1.00"), (100, "1.00"), (200, "1.00"), (201, "1.005"), (2001, "10.005"), (10_000, "50.00")],
)
def test_commission_is_the_larger_of_one_dollar_and_half_a_cent_per_share(shares, expected):
    assert commission(shares) == D(expected)


def test_commission_uses_the_given_rates():
    assert commission(1000, per_share=D("0.0035"), minimum=D("0.35")) == D("3.50")


def test_to_units_counts_hundredths_of_a_cent():
    assert to_units(np.array([12.34, 0.0001, 0.5, 499.99])).tolist() == [123_400, 1, 5_000, 4_999_900]


def test_to_units_rounds_float_noise_to_the_nearest_unit():
    assert to_units(np.array([0.1 + 0.2, 1.005])).tolist() == [3_000, 10_050]


def test_units_and_decimal_prices_round_trip():
    assert [price_to_units(units_to_price(u)) for u in (1, 9_999, 10_000, 1_234_567)] == [1, 9_999, 10_000, 1_234_567]


def test_scaled_to_tick_rounds_half_up_at_the_cent():
    assert scaled_to_tick(np.array([125_000]), D("1.026")).tolist() == [128_300]  # 12.825 -> 12.83


def test_scaled_to_tick_rounds_half_up_at_the_subpenny():
    assert scaled_to_tick(np.array([6_250]), D("1.026")).tolist() == [6_413]  # 0.641250 -> 0.6413


def test_scaled_to_tick_picks_the_tick_from_the_unrounded_product():
    # 0.9990 x 1.002 = 1.000998 rounds on the cent grid; 0.9000 x 1.002 = 0.9018 stays on the subpenny grid
    assert scaled_to_tick(np.array([9_990, 9_000]), D("1.002")).tolist() == [10_000, 9_018]


def test_scaled_to_tick_refuses_a_factor_too_fine_for_integer_arithmetic():
    with pytest.raises(OverflowError):
        scaled_to_tick(np.array([1_000_000]), D(1) / D(3))


def test_scaled_to_tick_equals_round_to_tick_on_random_prices_and_factors():
    rng = np.random.default_rng(7)
    price_units = np.concatenate(
        [
            rng.integers(1, 5_000_001, 3_000),  # $0.0001 .. $500
            rng.integers(9_000, 11_001, 1_000),  # around $1
        ]
    )
    mismatches = []
    for _ in range(60):
        # factors as the engine builds them: 1 +/- a percentage or bps with up to 4 decimals
        factor = 1 + D(int(rng.integers(-5_000, 50_001))) / D(1_000_000)

        scaled = scaled_to_tick(price_units, factor)

        expected = [price_to_units(round_to_tick(units_to_price(u) * factor)) for u in price_units]
        mismatches += [(int(u), factor, int(s), e) for u, s, e in zip(price_units, scaled, expected) if s != e]
    assert not mismatches, f"{len(mismatches)} disagree; first (units, factor, scaled, expected): {mismatches[0]}"
