"""The paper fill model: the replay engine and the per-bar exit rule against hand-computed fills.

Every expected number below is worked out by hand from the spec. The last test checks the
replay engine against `reference_fill_model`, an independent Decimal implementation, on
thousands of random sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pytest

from openbell.core.backtest import EOD, FillCosts, SessionBars, replay_sessions
from openbell.core.exits import ExitCode, ExitPolicy, bar_exits, first_exits
from tests.unit.reference_fill_model import MinuteBar, round_half_up_to_tick, simulate_session

D = Decimal
UNITS = 10_000  # $0.0001 price units, as the engine counts them


def hm(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def units(price: str | Decimal) -> int:
    value = D(price) * UNITS
    assert value == value.to_integral_value(), f"{price} is finer than $0.0001"
    return int(value)


def dollars(value_units: int) -> Decimal:
    return D(int(value_units)) / UNITS


def bar(hhmm: str, open_: str, high: str, low: str, close: str) -> MinuteBar:
    return MinuteBar(hm(hhmm), D(open_), D(high), D(low), D(close))


def flat(hhmm: str, price: str) -> MinuteBar:
    return bar(hhmm, price, price, price, price)


def session_bars(sessions: list[list[MinuteBar]]) -> SessionBars:
    rows = [b for session in sessions for b in session]
    lengths = [len(session) for session in sessions]
    return SessionBars(
        starts=np.cumsum([0, *lengths[:-1]]).astype(np.int64),
        minute=np.array([b.minute for b in rows], dtype=np.int32),
        open=np.array([units(b.open) for b in rows], dtype=np.int64),
        high=np.array([units(b.high) for b in rows], dtype=np.int64),
        low=np.array([units(b.low) for b in rows], dtype=np.int64),
        close=np.array([units(b.close) for b in rows], dtype=np.int64),
    )


@dataclass(frozen=True)
class Replayed:
    """One session's replay result, in dollars and minutes."""

    filled: bool
    entry: Decimal
    target: Decimal
    stop: Decimal
    exit_price: Decimal
    exit_reason: str | None
    exit_minute: int | None
    commission: Decimal
    pnl: Decimal


_REASONS = {int(ExitCode.TARGET): "target", int(ExitCode.STOP): "stop", EOD: "eod"}


def replay_one(
    bars: list[MinuteBar],
    shares: int = 100,
    liquidation: str = "15:45",
    slippage_bps: str = "0",
    policy: ExitPolicy = ExitPolicy(),
) -> Replayed:
    sessions = session_bars([bars])
    result = replay_sessions(sessions, np.array([shares]), hm(liquidation), policy, FillCosts(slippage_bps=D(slippage_bps)))
    exit_index = int(result.exit_index[0])
    return Replayed(
        filled=bool(result.filled[0]),
        entry=dollars(result.entry_price[0]),
        target=dollars(result.target[0]),
        stop=dollars(result.stop[0]),
        exit_price=dollars(result.exit_price[0]),
        exit_reason=_REASONS.get(int(result.exit_code[0])),
        exit_minute=int(sessions.minute[exit_index]) if exit_index >= 0 else None,
        commission=dollars(result.commission[0]),
        pnl=dollars(result.pnl[0]),
    )


def exit_of_bar(open_: str, high: str, low: str, target: str, stop: str) -> tuple[int, Decimal]:
    code, price = bar_exits(
        np.array([units(open_)]),
        np.array([units(high)]),
        np.array([units(low)]),
        np.array([units(target)]),
        np.array([units(stop)]),
    )
    return int(code[0]), dollars(price[0])


# A $100.00 opening print: target 102.60 (+2.6%), stop 99.10 (-0.9%); 100 shares pay $1.00 per order.
OPENING = bar("09:30", "100.00", "100.40", "99.60", "100.20")


# -- entry ------------------------------------------------------------------------------------


def test_moo_entry_fills_at_open_of_0930_bar():
    result = replay_one([OPENING, flat("09:31", "100.30")])

    assert (result.filled, result.entry) == (True, D("100.00"))


def test_target_and_stop_are_set_from_fill_price_at_default_percentages():
    result = replay_one([OPENING, flat("09:31", "100.30")])

    assert (result.target, result.stop) == (D("102.60"), D("99.10"))


def test_target_and_stop_follow_the_policy_percentages():
    policy = ExitPolicy(target_pct=D("5"), stop_pct=D("2.5"))

    result = replay_one([OPENING, flat("09:31", "100.30")], policy=policy)

    assert (result.target, result.stop) == (D("105.00"), D("97.50"))


def test_no_0930_bar_leaves_entry_unfilled():
    bars = [bar("09:31", "100.00", "110.00", "90.00", "100.00"), flat("15:50", "100.00")]

    result = replay_one(bars)

    assert (result.filled, result.exit_reason, result.pnl, result.commission) == (False, None, 0, 0)


def test_no_0930_bar_leaves_entry_unfilled_in_reference_model():
    bars = [bar("09:31", "100.00", "110.00", "90.00", "100.00"), flat("15:50", "100.00")]

    assert simulate_session(bars, shares=100) is None


def test_session_without_any_bar_is_unfilled_and_leaves_neighbours_intact():
    sessions = session_bars([[], [OPENING, bar("09:31", "100.30", "103.00", "100.20", "102.00")]])

    result = replay_sessions(sessions, np.array([100, 100]), hm("15:45"))

    assert result.filled.tolist() == [False, True]
    assert dollars(result.exit_price[1]) == D("102.60")


# -- exits, one branch at a time --------------------------------------------------------------


def test_target_fills_at_target_price_when_high_reaches_it():
    bars = [OPENING, bar("09:31", "100.30", "102.70", "100.10", "102.00")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price, result.exit_minute) == ("target", D("102.60"), hm("09:31"))
    assert result.pnl == D("258.00")  # 2.60 x 100 - 2 x $1.00


def test_target_fills_when_high_equals_target_exactly():
    bars = [OPENING, bar("09:31", "100.30", "102.60", "100.10", "102.00")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price) == ("target", D("102.60"))


def test_stop_fills_at_stop_price_when_low_reaches_it():
    bars = [OPENING, bar("09:31", "99.80", "99.90", "99.00", "99.50")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price, result.exit_minute) == ("stop", D("99.10"), hm("09:31"))
    assert result.pnl == D("-92.00")  # -0.90 x 100 - 2 x $1.00


def test_stop_fills_when_low_equals_stop_exactly():
    bars = [OPENING, bar("09:31", "99.80", "99.90", "99.10", "99.50")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price) == ("stop", D("99.10"))


def test_stop_fills_at_open_when_bar_gaps_through_stop():
    bars = [OPENING, flat("09:31", "100.10"), bar("09:33", "98.50", "98.90", "98.20", "98.60")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price, result.exit_minute) == ("stop", D("98.50"), hm("09:33"))
    assert result.pnl == D("-152.00")  # -1.50 x 100 - 2 x $1.00


def test_stop_fills_at_open_when_bar_opens_exactly_at_stop_even_if_high_reaches_target():
    bars = [OPENING, bar("09:31", "99.10", "103.00", "99.10", "102.00")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price) == ("stop", D("99.10"))


def test_target_fills_at_open_when_bar_gaps_through_target():
    bars = [OPENING, flat("09:31", "100.10"), bar("09:35", "103.00", "103.50", "97.00", "98.00")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price, result.exit_minute) == ("target", D("103.00"), hm("09:35"))
    assert result.pnl == D("298.00")  # 3.00 x 100 - 2 x $1.00


def test_target_fills_at_open_when_bar_opens_exactly_at_target_even_if_low_reaches_stop():
    bars = [OPENING, bar("09:31", "102.60", "102.80", "99.00", "99.50")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price) == ("target", D("102.60"))


def test_stop_wins_when_one_bar_touches_both_levels():
    bars = [OPENING, bar("09:31", "100.00", "103.00", "99.00", "102.90")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price) == ("stop", D("99.10"))


def test_entry_bar_range_can_trigger_exit():
    bars = [bar("09:30", "100.00", "100.20", "99.00", "99.40"), flat("09:31", "101.00")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price, result.exit_minute) == ("stop", D("99.10"), hm("09:30"))


def test_entry_bar_high_can_reach_target():
    bars = [bar("09:30", "100.00", "102.75", "99.90", "102.50"), flat("09:31", "99.00")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price, result.exit_minute) == ("target", D("102.60"), hm("09:30"))


def test_first_triggering_bar_wins():
    bars = [
        OPENING,
        bar("09:31", "100.30", "102.90", "100.20", "102.70"),  # target
        bar("09:32", "102.70", "102.70", "98.00", "98.50"),  # would stop, too late
    ]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_minute) == ("target", hm("09:31"))


# -- liquidation ------------------------------------------------------------------------------


def test_exit_checks_stop_before_liquidation_time():
    bars = [OPENING, flat("15:44", "100.40"), bar("15:45", "100.50", "110.00", "90.00", "100.00")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price, result.exit_minute) == ("eod", D("100.50"), hm("15:45"))


def test_bar_starting_one_minute_before_liquidation_time_can_trigger_exit():
    bars = [OPENING, bar("15:44", "100.40", "100.40", "99.00", "99.20"), flat("15:45", "99.20")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price, result.exit_minute) == ("stop", D("99.10"), hm("15:44"))


def test_liquidation_fills_at_open_of_bar_starting_at_liquidation_time():
    bars = [OPENING, flat("12:00", "100.60"), bar("15:45", "100.70", "100.90", "100.50", "100.80"), flat("15:46", "101")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price, result.exit_minute) == ("eod", D("100.70"), hm("15:45"))
    assert result.pnl == D("68.00")  # 0.70 x 100 - 2 x $1.00


def test_liquidation_fills_at_first_bar_open_at_or_after_liquidation_time_when_minutes_are_missing():
    bars = [
        OPENING,
        flat("10:00", "100.20"),
        flat("15:40", "100.10"),
        bar("15:47", "100.30", "100.50", "100.00", "100.40"),
        flat("15:50", "100.90"),
    ]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price, result.exit_minute) == ("eod", D("100.30"), hm("15:47"))


def test_liquidation_fills_at_last_close_when_no_bar_after_liquidation_time():
    bars = [OPENING, bar("15:30", "100.20", "100.50", "100.10", "100.40")]

    result = replay_one(bars)

    assert (result.exit_reason, result.exit_price, result.exit_minute) == ("eod", D("100.40"), None)
    assert result.pnl == D("38.00")  # 0.40 x 100 - 2 x $1.00


def test_liquidation_fills_at_close_of_the_0930_bar_when_it_is_the_only_bar():
    result = replay_one([OPENING])

    assert (result.exit_reason, result.exit_price, result.exit_minute) == ("eod", D("100.20"), None)


def test_liquidation_time_is_per_session():
    sessions = session_bars(
        [
            [OPENING, flat("12:45", "101.00"), flat("15:45", "101.50")],
            [OPENING, flat("12:45", "101.00"), flat("15:45", "101.50")],
        ]
    )

    result = replay_sessions(sessions, np.array([100, 100]), np.array([hm("12:45"), hm("15:45")]))

    assert [dollars(p) for p in result.exit_price] == [D("101.00"), D("101.50")]


# -- commission -------------------------------------------------------------------------------


def test_commission_is_one_dollar_minimum_per_order():
    bars = [OPENING, bar("15:45", "101.00", "101.00", "101.00", "101.00")]

    result = replay_one(bars, shares=200)

    assert (result.commission, result.pnl) == (D("2.00"), D("198.00"))  # 1.00 x 200 - 2 x $1.00


def test_commission_is_half_a_cent_per_share_above_200_shares():
    bars = [OPENING, bar("15:45", "101.00", "101.00", "101.00", "101.00")]

    result = replay_one(bars, shares=2001)

    assert (result.commission, result.pnl) == (D("20.01"), D("1980.99"))  # 1.00 x 2001 - 2 x $10.005


# -- slippage ---------------------------------------------------------------------------------
# 10 bps on a $100.00 print: entry 100.10, target round(102.7026) = 102.70, stop round(99.1991) = 99.20.


def test_slippage_makes_moo_entry_worse_and_levels_follow_the_fill():
    result = replay_one([OPENING, flat("09:31", "100.30")], slippage_bps="10")

    assert (result.entry, result.target, result.stop) == (D("100.10"), D("102.70"), D("99.20"))


def test_slippage_makes_stop_fill_worse_than_stop_price():
    bars = [OPENING, bar("09:31", "99.80", "99.90", "99.00", "99.50")]

    result = replay_one(bars, slippage_bps="10")

    assert (result.exit_reason, result.exit_price) == ("stop", D("99.10"))  # 99.20 x 0.999 = 99.1008


def test_slippage_makes_stop_fill_worse_than_gap_open():
    bars = [OPENING, bar("09:31", "98.00", "98.20", "97.50", "98.10")]

    result = replay_one(bars, slippage_bps="10")

    assert (result.exit_reason, result.exit_price) == ("stop", D("97.90"))  # 98.00 x 0.999 = 97.902


def test_slippage_makes_liquidation_fill_worse():
    bars = [OPENING, flat("15:45", "101.00")]

    result = replay_one(bars, slippage_bps="10")

    assert (result.exit_reason, result.exit_price) == ("eod", D("100.90"))  # 101.00 x 0.999 = 100.899
    assert result.pnl == D("78.00")  # (100.90 - 100.10) x 100 - 2 x $1.00


def test_slippage_makes_last_close_liquidation_worse():
    bars = [OPENING, bar("15:00", "100.50", "101.00", "100.40", "101.00")]

    result = replay_one(bars, slippage_bps="10")

    assert (result.exit_reason, result.exit_price) == ("eod", D("100.90"))


def test_slippage_never_applies_to_target_fill_at_target_price():
    bars = [OPENING, bar("09:31", "100.30", "103.00", "100.20", "102.90")]

    result = replay_one(bars, slippage_bps="10")

    assert (result.exit_reason, result.exit_price) == ("target", D("102.70"))


def test_slippage_never_applies_to_target_fill_at_gap_open():
    bars = [OPENING, bar("09:31", "104.00", "104.50", "103.50", "104.20")]

    result = replay_one(bars, slippage_bps="10")

    assert (result.exit_reason, result.exit_price) == ("target", D("104.00"))


# -- ticks and rounding -----------------------------------------------------------------------


def test_sub_dollar_prices_use_the_0_0001_tick():
    # 0.7777 x 1.026 = 0.7979202 -> 0.7979; 0.7777 x 0.991 = 0.7707007 -> 0.7707
    bars = [bar("09:30", "0.7777", "0.7790", "0.7700", "0.7710")]

    result = replay_one(bars, shares=1000)

    assert (result.target, result.stop) == (D("0.7979"), D("0.7707"))
    assert (result.exit_reason, result.exit_price) == ("stop", D("0.7707"))
    assert result.pnl == D("-17.00")  # -0.0070 x 1000 - 2 x $5.00


def test_target_rounds_half_up_at_the_cent():
    # 12.50 x 1.026 = 12.825 exactly: half-up gives 12.83 (half-even would give 12.82)
    result = replay_one([bar("09:30", "12.50", "12.83", "12.45", "12.80")])

    assert (result.target, result.exit_reason, result.exit_price) == (D("12.83"), "target", D("12.83"))


def test_stop_rounds_half_up_at_the_cent():
    # 15.00 x 0.991 = 14.865 exactly: half-up gives 14.87 (half-even would give 14.86)
    result = replay_one([bar("09:30", "15.00", "15.05", "14.87", "14.90")])

    assert (result.stop, result.exit_reason, result.exit_price) == (D("14.87"), "stop", D("14.87"))
    assert result.pnl == D("-15.00")  # -0.13 x 100 - 2 x $1.00


def test_target_rounds_half_up_at_the_subpenny():
    # 0.6250 x 1.026 = 0.641250 exactly: half-up gives 0.6413
    result = replay_one([flat("09:30", "0.6250")], shares=1000)

    assert result.target == D("0.6413")


def test_slipped_entry_rounds_half_up():
    # 20.00 x 1.00025 = 20.005 exactly: half-up gives 20.01
    result = replay_one([flat("09:30", "20.00")], slippage_bps="2.5")

    assert result.entry == D("20.01")


def test_sub_dollar_print_that_slips_above_one_dollar_fills_on_the_cent_grid():
    # 0.9990 x 1.002 = 1.000998: the unrounded price is at or above $1, so the tick is $0.01
    result = replay_one([flat("09:30", "0.9990")], slippage_bps="20")

    assert result.entry == D("1.00")


def test_target_above_one_dollar_from_sub_dollar_entry_uses_the_cent_tick():
    # 0.9750 x 1.026 = 1.00035 -> 1.00; 0.9750 x 0.991 = 0.966225 -> 0.9662
    result = replay_one([flat("09:30", "0.9750")], shares=1000)

    assert (result.target, result.stop) == (D("1.00"), D("0.9662"))


# -- bar_exits: the per-bar rule shared by the engine, the paper broker and the live monitor --
# Levels for a $100.00 entry: target 102.60, stop 99.10.


def test_bar_exits_target_fills_at_open_when_bar_gaps_through_target():
    assert exit_of_bar("103.00", "103.50", "98.00", "102.60", "99.10") == (ExitCode.TARGET, D("103.00"))


def test_bar_exits_stop_fills_at_open_when_bar_gaps_through_stop():
    assert exit_of_bar("98.50", "103.00", "98.20", "102.60", "99.10") == (ExitCode.STOP, D("98.50"))


def test_bar_exits_stop_wins_when_one_bar_touches_both_levels():
    assert exit_of_bar("100.00", "103.00", "99.00", "102.60", "99.10") == (ExitCode.STOP, D("99.10"))


def test_bar_exits_stop_fills_at_stop_price_when_low_reaches_it():
    assert exit_of_bar("100.00", "100.50", "99.10", "102.60", "99.10") == (ExitCode.STOP, D("99.10"))


def test_bar_exits_target_fills_at_target_price_when_high_reaches_it():
    assert exit_of_bar("100.00", "102.60", "99.20", "102.60", "99.10") == (ExitCode.TARGET, D("102.60"))


def test_bar_exits_target_fills_at_open_when_bar_opens_exactly_at_target():
    assert exit_of_bar("102.60", "102.60", "99.00", "102.60", "99.10") == (ExitCode.TARGET, D("102.60"))


def test_bar_exits_stop_fills_at_open_when_bar_opens_exactly_at_stop():
    assert exit_of_bar("99.10", "103.00", "99.10", "102.60", "99.10") == (ExitCode.STOP, D("99.10"))


def test_bar_exits_reports_no_exit_when_bar_stays_between_levels():
    assert exit_of_bar("100.00", "102.59", "99.11", "102.60", "99.10") == (ExitCode.NONE, D(0))


def test_bar_exits_decides_many_positions_at_once_with_scalar_levels():
    open_ = np.array([units("103"), units("98"), units("100"), units("100"), units("100")])
    high = np.array([units("104"), units("99"), units("103"), units("103"), units("101")])
    low = np.array([units("102"), units("97"), units("99"), units("100"), units("99.5")])

    code, price = bar_exits(open_, high, low, units("102.60"), units("99.10"))

    assert code.tolist() == [ExitCode.TARGET, ExitCode.STOP, ExitCode.STOP, ExitCode.TARGET, ExitCode.NONE]
    assert price.tolist() == [units("103"), units("98"), units("99.10"), units("102.60"), 0]


def test_first_exits_ignores_inactive_bars_and_reports_the_first_trigger_per_position():
    # position 0: bars 0-2, bar 1 inactive (would stop), bar 2 hits the target
    # position 1: bars 3-4, nothing triggers
    open_ = np.array([100, 100, 100, 50, 50]) * UNITS
    high = np.array([101, 101, 103, 51, 51]) * UNITS
    low = np.array([100, 95, 100, 49, 49]) * UNITS
    active = np.array([True, False, True, True, True])

    index, code, price = first_exits(
        open_, high, low, np.array([0, 3]), np.array([102, 60]) * UNITS, np.array([99, 40]) * UNITS, active
    )

    assert index.tolist() == [2, -1]
    assert code.tolist() == [ExitCode.TARGET, ExitCode.NONE]
    assert price.tolist() == [102 * UNITS, 0]


# -- the reference model on the same hand-computed cases ---------------------------------------


@pytest.mark.parametrize(
    ("bars", "slippage_bps", "expected"),
    [
        ([OPENING, bar("09:31", "98.50", "98.90", "98.20", "98.60")], "0", ("stop", D("98.50"), hm("09:31"), D("-152.00"))),
        (
            [OPENING, bar("09:31", "103.00", "103.50", "97.00", "98.00")],
            "0",
            ("target", D("103.00"), hm("09:31"), D("298.00")),
        ),
        (
            [OPENING, bar("09:31", "100.00", "103.00", "99.00", "102.90")],
            "0",
            ("stop", D("99.10"), hm("09:31"), D("-92.00")),
        ),
        (
            [OPENING, bar("09:31", "100.30", "102.70", "100.10", "102.00")],
            "0",
            ("target", D("102.60"), hm("09:31"), D("258.00")),
        ),
        ([OPENING, flat("15:40", "100.10"), flat("15:47", "100.30")], "0", ("eod", D("100.30"), hm("15:47"), D("28.00"))),
        ([OPENING, bar("15:30", "100.20", "100.50", "100.10", "100.40")], "0", ("eod", D("100.40"), None, D("38.00"))),
        (
            [OPENING, flat("15:44", "100.40"), bar("15:45", "100.50", "110.00", "90.00", "100.00")],
            "0",
            ("eod", D("100.50"), hm("15:45"), D("48.00")),
        ),
        ([OPENING, bar("09:31", "99.80", "99.90", "99.00", "99.50")], "10", ("stop", D("99.10"), hm("09:31"), D("-102.00"))),
        (
            [OPENING, bar("09:31", "100.30", "103.00", "100.20", "102.90")],
            "10",
            ("target", D("102.70"), hm("09:31"), D("258.00")),
        ),
    ],
    ids=[
        "gap through stop",
        "gap through target",
        "touches both",
        "high reaches target",
        "missing minutes at liquidation",
        "last close",
        "no exit checks from liquidation time",
        "slipped stop",
        "target without slippage",
    ],
)
def test_reference_model_gives_the_hand_computed_fills(bars, slippage_bps, expected):
    trade = simulate_session(bars, shares=100, slippage_bps=D(slippage_bps))

    assert (trade.exit_reason, trade.exit_price, trade.exit_minute, trade.pnl) == expected


# -- agreement with the reference model on random sessions ------------------------------------

_LIQUIDATION_CHOICES = (hm("15:45"), hm("15:45"), hm("15:45"), hm("12:45"), hm("10:00"), hm("16:00"))
_POLICIES = (
    ExitPolicy(),
    ExitPolicy(),
    ExitPolicy(target_pct=D("1.5"), stop_pct=D("0.5")),
    ExitPolicy(target_pct=D("5"), stop_pct=D("2.25")),
)


def _on_tick(price_units: np.ndarray) -> np.ndarray:
    """Snap raw unit prices onto the tick grid (monotone, so bar ordering survives)."""
    price_units = np.maximum(np.rint(price_units).astype(np.int64), 1)
    return np.where(price_units >= UNITS, (price_units + 50) // 100 * 100, price_units)


def _random_session(rng: np.random.Generator, policy: ExitPolicy, slippage_bps: Decimal) -> list[MinuteBar]:
    if rng.random() < 0.01:
        return []
    if rng.random() < 0.15:
        opening = rng.uniform(0.95, 1.05)  # around the $1 tick boundary
    else:
        opening = float(np.exp(rng.uniform(np.log(0.50), np.log(500.0))))
    last_minute = hm("16:00") if rng.random() < 0.3 else hm("15:59")
    if rng.random() < 0.15:
        last_minute = int(rng.integers(hm("09:30"), hm("15:59")))  # the data stops early
    minutes = np.arange(hm("09:30"), last_minute + 1)
    keep = rng.random(len(minutes)) >= rng.choice([0.0, 0.05, 0.3, 0.9])
    keep[0] = rng.random() >= 0.05  # the opening print is sometimes missing
    minutes = minutes[keep]
    n = len(minutes)
    if n == 0:
        return []

    sigma = rng.choice([0.0005, 0.001, 0.003])
    jumps = np.where(rng.random(n) < 0.02, rng.normal(0, 0.03, n), 0.0)  # gaps at the open of a bar
    drift = rng.normal(0, sigma, n)
    closes = opening * np.exp(np.cumsum(jumps + drift))
    opens = np.concatenate([[opening], closes[:-1] * np.exp(jumps[1:])])
    highs = np.maximum(opens, closes) * (1 + np.abs(rng.normal(0, sigma, n)))
    lows = np.minimum(opens, closes) * (1 - np.abs(rng.normal(0, sigma, n)))
    o, h, l, c = (_on_tick(x * UNITS) for x in (opens, highs, lows, closes))

    # Put some bars exactly on the target or stop, where off-by-one comparisons hide.
    if minutes[0] == hm("09:30"):
        entry = round_half_up_to_tick(dollars(o[0]) * (1 + slippage_bps / 10_000))
        levels = [
            units(round_half_up_to_tick(entry * (1 + policy.target_pct / 100))),
            units(round_half_up_to_tick(entry * (1 - policy.stop_pct / 100))),
        ]
        for i in np.flatnonzero(rng.random(n) < 0.01):
            level = levels[rng.integers(2)]
            field = rng.integers(3)
            if field == 0:
                o[i] = level
            elif field == 1:
                h[i] = level
            else:
                l[i] = level
            h[i] = max(h[i], o[i], c[i], l[i])
            l[i] = min(l[i], o[i], c[i], h[i])

    return [MinuteBar(int(m), dollars(o[i]), dollars(h[i]), dollars(l[i]), dollars(c[i])) for i, m in enumerate(minutes)]


def test_replay_agrees_with_reference_model_on_random_sessions():
    rng = np.random.default_rng(20250303)
    mismatches = []
    for batch in range(40):
        slippage_bps = D(int(rng.integers(0, 201))) / 10  # 0.0 .. 20.0 bps
        policy = _POLICIES[rng.integers(len(_POLICIES))]
        sessions = [_random_session(rng, policy, slippage_bps) for _ in range(50)]
        shares = rng.integers(1, 5000, len(sessions))
        liquidation = rng.choice(_LIQUIDATION_CHOICES, len(sessions))
        bars = session_bars(sessions)

        result = replay_sessions(bars, shares, liquidation, policy, FillCosts(slippage_bps=slippage_bps))

        for i, session in enumerate(sessions):
            expected = simulate_session(
                session, int(shares[i]), int(liquidation[i]), policy.target_pct, policy.stop_pct, slippage_bps
            )
            exit_index = int(result.exit_index[i])
            actual = (
                bool(result.filled[i]),
                dollars(result.entry_price[i]),
                dollars(result.exit_price[i]),
                _REASONS.get(int(result.exit_code[i])),
                int(bars.minute[exit_index]) if exit_index >= 0 else None,
                dollars(result.commission[i]),
                dollars(result.pnl[i]),
            )
            wanted = (
                (False, D(0), D(0), None, None, D(0), D(0))
                if expected is None
                else (
                    True,
                    expected.entry_price,
                    expected.exit_price,
                    expected.exit_reason,
                    expected.exit_minute,
                    expected.commission,
                    expected.pnl,
                )
            )
            if actual != wanted:
                mismatches.append((batch, i, slippage_bps, policy, int(shares[i]), int(liquidation[i]), actual, wanted))

    assert not mismatches, f"{len(mismatches)} sessions disagree; first: {mismatches[0]}"
