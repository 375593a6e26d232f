"""The exit rules beyond target and stop: the scalar stepper bar by bar, and the replay engine equal to it.

`core.exits.step` is the reference (the paper broker and the monitor follow it one bar at a time);
`core.backtest.replay_sessions` applies the same rules to whole columns. The hand-computed cases below
pin the stepper; the randomized test steps every session of many synthetic ones through it and
requires the engine's result, field for field, for every combination of the new options.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import numpy as np
import pytest

from openbell.core.backtest import REASONS, FillCosts, replay_sessions
from openbell.core.exits import ExitBar, ExitCode, ExitPolicy, ExitState, breakeven_stop, exit_levels_for, step
from openbell.core.prices import exit_levels, round_to_tick, with_slippage
from openbell.core.types import Side
from tests.unit.test_fill_model import _random_session as random_session
from tests.unit.test_fill_model import dollars, hm, session_bars, units

D = Decimal
OPEN = hm("09:30")
CLOSE = hm("15:45")


def xbar(hhmm: str, open_: str, high: str, low: str) -> ExitBar:
    return ExitBar(hm(hhmm), units(open_), units(high), units(low))


def walk(state: ExitState, bars: list[ExitBar]) -> list[tuple[int, ExitCode, Decimal, Decimal]]:
    """(minute, code, price, stop for the next bar) of each bar stepped, up to the exit."""
    seen = []
    for bar in bars:
        state, decision = step(state, bar)
        seen.append((bar.minute, decision.code, dollars(decision.price), dollars(decision.stop)))
        if decision.code != ExitCode.NONE:
            break
    return seen


def opened(policy: ExitPolicy, entry: str = "100.00", atr: str | None = None, confidence: float | None = None):
    return ExitState.opened(policy, D(entry), OPEN, CLOSE, None if atr is None else D(atr), confidence)


# -- levels -------------------------------------------------------------------------------------


def test_default_levels_equal_the_percentage_levels():
    levels = exit_levels_for(ExitPolicy(), D("12.50"))

    assert (levels.target, levels.stop) == exit_levels(D("12.50"), D("2.6"), D("0.9"))


def test_atr_multiples_replace_the_percentages_when_the_atr_is_known():
    # ATR 1.2345: 2 x ATR = 2.469 -> 2.47; 1 x ATR = 1.2345 -> 1.23 (amounts on the tick)
    levels = exit_levels_for(ExitPolicy(target_atr=D(2), stop_atr=D(1)), D("50.00"), atr=D("1.2345"))

    assert (levels.target, levels.stop) == (D("52.47"), D("48.77"))


def test_atr_multiples_fall_back_to_the_percentages_without_an_atr():
    levels = exit_levels_for(ExitPolicy(target_atr=D(2), stop_atr=D(1)), D("50.00"), atr=None)

    assert (levels.target, levels.stop) == (D("51.30"), D("49.55"))


@pytest.mark.parametrize(
    ("confidence", "target"),
    [(0.95, D("102.60")), (0.8, D("102.60")), (0.75, D("101.80")), (0.5, D("103.00")), (None, D("103.00"))],
)
def test_confidence_table_picks_the_target_percentage(confidence, target):
    policy = ExitPolicy(target_pct=D(3), confidence_targets=((D("0.7"), D("1.8")), (D("0.8"), D("2.6"))))

    assert exit_levels_for(policy, D("100.00"), confidence=confidence).target == target


def test_trailing_stop_starts_no_lower_than_the_trail_from_the_entry_fill():
    # fixed stop 99.10; a 0.5% trail from the 100.00 fill is 99.50
    assert exit_levels_for(ExitPolicy(trail_pct=D("0.5")), D("100.00")).stop == D("99.50")


# -- the stepper, bar by bar ----------------------------------------------------------------------


def test_step_stop_fills_at_open_when_bar_gaps_through_stop():
    seen = walk(opened(ExitPolicy()), [xbar("09:30", "100.00", "100.20", "99.90"), xbar("09:31", "98.00", "98.50", "97.80")])

    assert seen[-1][:3] == (hm("09:31"), ExitCode.STOP, D("98.00"))


def test_step_stop_wins_when_one_bar_touches_both_levels():
    seen = walk(opened(ExitPolicy()), [xbar("09:30", "100.00", "103.00", "99.00")])

    assert seen == [(OPEN, ExitCode.STOP, D("99.10"), D("99.10"))]


def test_step_missing_minutes_are_absent_bars_and_nothing_is_invented():
    # 09:31-09:44 missing; the trail only knows the highs of bars that exist
    policy = ExitPolicy(trail_pct=D(1))
    bars = [xbar("09:30", "100.00", "101.00", "99.95"), xbar("09:45", "100.50", "100.60", "99.80")]

    seen = walk(opened(policy), bars)

    assert seen == [(OPEN, ExitCode.NONE, D(0), D("99.99")), (hm("09:45"), ExitCode.STOP, D("99.99"), D("99.99"))]


def test_step_trailing_stop_ratchets_up_with_completed_highs_and_never_down():
    policy = ExitPolicy(target_pct=D(5), trail_pct=D(1))  # from 100.00: 99.00; fixed stop 99.10; target 105.00
    bars = [
        xbar("09:30", "100.00", "102.00", "99.95"),  # high 102.00 -> 100.98
        xbar("09:31", "101.50", "101.60", "101.00"),  # lower high: stays 100.98
        xbar("09:32", "101.00", "103.00", "101.00"),  # high 103.00 -> 101.97
        xbar("09:33", "102.50", "102.60", "101.90"),  # low reaches 101.97
    ]

    seen = walk(opened(policy), bars)

    assert [s[3] for s in seen] == [D("100.98"), D("100.98"), D("101.97"), D("101.97")]
    assert seen[-1][:3] == (hm("09:33"), ExitCode.STOP, D("101.97"))


def test_step_trailing_stop_uses_the_highs_of_completed_bars_only():
    # the bar's own high 102.00 would put a 1% trail at 100.98, above its low; the intrabar order is unknown
    policy = ExitPolicy(trail_pct=D(1))
    seen = walk(opened(policy), [xbar("09:30", "100.00", "102.00", "100.50")])

    assert seen == [(OPEN, ExitCode.NONE, D(0), D("100.98"))]


def test_step_trailing_stop_in_atr_multiples():
    # ATR 0.80, 1.5 x ATR = 1.20; from the 100.00 fill 98.80 (the fixed 99.10 is higher); high 101.00 -> 99.80
    policy = ExitPolicy(trail_atr=D("1.5"))
    seen = walk(
        opened(policy, atr="0.80"), [xbar("09:30", "100.00", "101.00", "99.95"), xbar("09:31", "100", "100", "99.7")]
    )

    assert seen == [(OPEN, ExitCode.NONE, D(0), D("99.80")), (hm("09:31"), ExitCode.STOP, D("99.80"), D("99.80"))]


def test_step_breakeven_moves_the_stop_to_the_entry_after_a_completed_bar_reaches_the_trigger():
    policy = ExitPolicy(breakeven_after_pct=D(1))  # trigger 101.00
    bars = [
        xbar("09:30", "100.00", "100.90", "99.95"),  # below the trigger: stop stays 99.10
        xbar("09:31", "100.50", "101.00", "100.40"),  # reaches it: from the next bar the stop is 100.00
        xbar("09:32", "100.60", "100.70", "99.90"),  # low reaches the entry
    ]

    seen = walk(opened(policy), bars)

    assert [s[3] for s in seen] == [D("99.10"), D("100.00"), D("100.00")]
    assert seen[-1][:3] == (hm("09:32"), ExitCode.STOP, D("100.00"))


def test_step_breakeven_is_not_armed_by_the_bar_that_reaches_the_trigger():
    policy = ExitPolicy(breakeven_after_pct=D(1))
    seen = walk(opened(policy), [xbar("09:30", "100.00", "101.50", "99.50")])  # high and low in one bar: order unknown

    assert seen == [(OPEN, ExitCode.NONE, D(0), D("100.00"))]


# -- the break-even at the broker: when the monitor replaces the pair --------------------------------


def test_breakeven_stop_is_the_entry_once_the_highest_completed_high_reaches_the_trigger():
    levels = exit_levels_for(ExitPolicy(breakeven_after_pct=D(1)), D("100.00"))  # trigger 101.00, stop 99.10

    assert breakeven_stop(levels, D("100.00"), None) is None  # no completed bar yet
    assert breakeven_stop(levels, D("100.00"), D("100.99")) is None
    assert breakeven_stop(levels, D("100.00"), D("101.00")) == D("100.00")


def test_breakeven_stop_is_none_with_the_break_even_off():
    levels = exit_levels_for(ExitPolicy(), D("100.00"))

    assert breakeven_stop(levels, D("100.00"), D("150.00")) is None


def test_breakeven_stop_is_none_when_the_trailing_stop_already_rose_to_the_entry():
    levels = exit_levels_for(ExitPolicy(breakeven_after_pct=D(1), trail_pct=D(1)), D("100.00"))

    assert breakeven_stop(levels, D("100.00"), D("101.00")) == D("100.00")  # the trail is at 99.99
    assert breakeven_stop(levels, D("100.00"), D("101.02")) is None  # the trail is at 100.00 (100.0098 on the tick)


@pytest.mark.parametrize("trail", [None, D("0.7")])
def test_breakeven_stop_raises_the_stop_exactly_where_the_stepper_does(trail):
    policy = ExitPolicy(target_pct=D(5), stop_pct=D(2), breakeven_after_pct=D("0.4"), trail_pct=trail)
    rng = np.random.default_rng(7)
    checked = raised = 0
    for _ in range(200):
        entry = round_to_tick(D(str(round(float(rng.uniform(1, 200)), 2))))
        state = opened(policy, str(entry))
        levels = exit_levels_for(policy, entry)
        highest = None
        for minute in range(OPEN, OPEN + 30):
            low, high = sorted(units(round_to_tick(entry * D(str(1 + rng.normal(0, 0.004))))) for _ in range(2))
            state, decision = step(state, ExitBar(minute, low, high, low))
            if decision.code != ExitCode.NONE:
                break
            highest = dollars(high) if highest is None else max(highest, dollars(high))
            moved = breakeven_stop(levels, entry, highest)
            trailed = D(0) if trail is None else round_to_tick(highest * (1 - trail / 100))
            without = max(levels.stop, trailed)
            assert dollars(decision.stop) == (without if moved is None else max(without, moved))
            assert moved is None or without < entry
            checked, raised = checked + 1, raised + (moved is not None)
    assert checked and raised  # the comparison ran, and some stops were raised


def test_step_time_exit_sells_at_the_open_of_the_first_bar_at_or_after_entry_plus_n_minutes():
    policy = ExitPolicy(time_exit_min=30)  # due 10:00; 10:00 is missing
    bars = [
        xbar("09:30", "100.00", "100.20", "99.90"),
        xbar("09:59", "100", "100", "100"),
        xbar("10:02", "100.40", "103", "99"),
    ]

    seen = walk(opened(policy), bars)

    assert seen[-1][:3] == (hm("10:02"), ExitCode.TIME, D("100.40"))


def test_step_liquidation_comes_before_a_later_time_exit():
    state = ExitState.opened(ExitPolicy(time_exit_min=400), D("100.00"), OPEN, CLOSE)

    _, decision = step(state, xbar("15:45", "100.30", "100.40", "100.20"))

    assert (decision.code, dollars(decision.price)) == (ExitCode.EOD, D("100.30"))


# -- the engine equals the stepper on random sessions, every combination of the options ---------------

TARGETS = {"pct": {}, "atr": {"target_atr": D("1.5")}, "confidence": {"confidence_targets": ((D("0.8"), D("1.2")),)}}
STOPS = {"pct": {}, "atr": {"stop_atr": D("0.7")}}
TRAILS = {"off": {}, "pct": {"trail_pct": D("0.6")}, "atr": {"trail_atr": D("0.9"), "trail_pct": D("1.1")}}
BREAKEVENS = {"off": {}, "on": {"breakeven_after_pct": D("0.4")}}
TIME_EXITS = {"off": {}, "on": {"time_exit_min": 45}}
COMBINATIONS = list(itertools.product(TARGETS, STOPS, TRAILS, BREAKEVENS, TIME_EXITS))


def stepped(session, shares: int, liquidation: int, policy: ExitPolicy, slippage: Decimal, atr, confidence):
    """The session traded by the stepper: (filled, entry, exit price, reason, exit minute, pnl) in dollars."""
    at = next((i for i, b in enumerate(session) if b.minute == OPEN), None)
    if at is None:
        return (False, D(0), D(0), None, None, D(0))
    entry = with_slippage(round_to_tick(session[at].open), Side.BUY, slippage)
    state = ExitState.opened(policy, entry, OPEN, liquidation, atr, confidence)
    for b in session[at:]:
        state, decision = step(state, ExitBar(b.minute, units(b.open), units(b.high), units(b.low)))
        if decision.code != ExitCode.NONE:
            price = dollars(decision.price)
            if decision.code != ExitCode.TARGET:  # market orders take the slippage
                price = with_slippage(price, Side.SELL, slippage)
            exit_price, reason, minute = price, REASONS[int(decision.code)], b.minute
            break
    else:
        exit_price, reason, minute = with_slippage(session[-1].close, Side.SELL, slippage), "eod", None
    commission = 2 * max(D("1.00"), D("0.005") * shares)
    return (True, entry, exit_price, reason, minute, (exit_price - entry) * shares - commission)


@pytest.mark.parametrize(("target", "stop", "trail", "breakeven", "time_exit"), COMBINATIONS)
def test_engine_equals_stepping_the_rule_bar_by_bar(target, stop, trail, breakeven, time_exit):
    options = TARGETS[target] | STOPS[stop] | TRAILS[trail] | BREAKEVENS[breakeven] | TIME_EXITS[time_exit]
    policy = ExitPolicy(target_pct=D("2.1"), stop_pct=D("0.8"), **options)
    rng = np.random.default_rng(1000 + COMBINATIONS.index((target, stop, trail, breakeven, time_exit)))
    slippage = D(int(rng.integers(0, 51))) / 10
    sessions = [random_session(rng, policy, slippage) for _ in range(60)]
    shares = rng.integers(1, 3000, len(sessions))
    liquidation = rng.choice([CLOSE, CLOSE, hm("12:45"), hm("10:00")], len(sessions))
    atr_units = np.where(rng.random(len(sessions)) < 0.2, 0, rng.integers(1, 40_000, len(sessions)))
    confidence = np.where(rng.random(len(sessions)) < 0.2, np.nan, rng.uniform(0.5, 1.0, len(sessions)))
    bars = session_bars(sessions)

    result = replay_sessions(bars, shares, liquidation, policy, FillCosts(slippage_bps=slippage), atr_units, confidence)

    mismatches = []
    for i, session in enumerate(sessions):
        atr = dollars(atr_units[i]) if atr_units[i] else None
        conf = None if np.isnan(confidence[i]) else float(confidence[i])
        wanted = stepped(session, int(shares[i]), int(liquidation[i]), policy, slippage, atr, conf)
        exit_index = int(result.exit_index[i])
        actual = (
            bool(result.filled[i]),
            dollars(result.entry_price[i]),
            dollars(result.exit_price[i]),
            REASONS.get(int(result.exit_code[i])),
            int(bars.minute[exit_index]) if exit_index >= 0 else None,
            dollars(result.pnl[i]),
        )
        if actual != wanted:
            mismatches.append((i, actual, wanted))
    assert not mismatches, f"{len(mismatches)} of {len(sessions)} sessions disagree; first: {mismatches[0]}"


def test_engine_with_the_defaults_ignores_atr_and_confidence():
    rng = np.random.default_rng(7)
    sessions = [random_session(rng, ExitPolicy(), D(0)) for _ in range(200)]
    bars = session_bars(sessions)
    shares = np.full(len(sessions), 100)

    plain = replay_sessions(bars, shares, CLOSE)
    given = replay_sessions(bars, shares, CLOSE, atr=np.full(len(sessions), 5000), confidence=np.full(len(sessions), 0.9))

    assert np.array_equal(plain.exit_price, given.exit_price) and np.array_equal(plain.exit_code, given.exit_code)
