"""The risk rules of the core: entry limits, the daily loss limit (as a check and in a replay), the drawdown halt."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from openbell.core.backtest import DAY_TARGET, EOD, KILL_SWITCH, OPEN_MINUTE, FillCosts, SessionBars, replay_sessions
from openbell.core.risk import (
    Action,
    Book,
    Halt,
    RiskLimits,
    Rule,
    admit_entries,
    closing_equities,
    day_limit_exits,
    day_pnl_breach,
    drawdown_breach,
)
from openbell.core.sizing import PositionSize

DAY = date(2024, 3, 5)
NOW = datetime(2024, 3, 5, 9, 20, tzinfo=ZoneInfo("America/New_York"))
EQUITY = Decimal(100_000)


def pick(symbol: str, notional: int, price: int = 50) -> PositionSize:
    return PositionSize(symbol, Decimal(price), notional // price, Decimal(notional))


def admitted(sizes, limits, book=Book(EQUITY), halted=None):
    kept, events = admit_entries(sizes, limits, book, trade_date=DAY, now=NOW, halted=halted)
    return [s.symbol for s in kept if s.shares], events


# -- entry limits ---------------------------------------------------------------------------------


def test_no_limits_admit_every_pick() -> None:
    symbols, events = admitted([pick("A", 10_000), pick("B", 10_000)], RiskLimits())
    assert symbols == ["A", "B"] and events == []


def test_max_positions_keeps_the_best_ranked_and_records_each_refusal_with_its_numbers() -> None:
    symbols, events = admitted([pick("A", 10_000), pick("B", 10_000), pick("C", 10_000)], RiskLimits(max_positions=2))

    assert symbols == ["A", "B"]
    (event,) = events
    assert (event.rule, event.action, event.symbol, event.observed, event.limit_value) == (
        Rule.MAX_POSITIONS, Action.REFUSED, "C", 3, 2,
    )  # fmt: skip
    assert "position 3 of at most 2" in event.message


def test_max_positions_counts_what_the_book_already_holds() -> None:
    symbols, _ = admitted([pick("A", 10_000), pick("B", 10_000)], RiskLimits(max_positions=2), Book(EQUITY, 1))
    assert symbols == ["A"]


def test_a_refused_pick_keeps_its_place_with_no_shares_and_the_reason() -> None:
    kept, _ = admit_entries([pick("A", 10_000), pick("B", 10_000)], RiskLimits(max_trades_per_day=1), Book(EQUITY),
                            trade_date=DAY, now=NOW)  # fmt: skip
    assert [(s.symbol, s.shares) for s in kept] == [("A", 200), ("B", 0)]
    assert kept[1].skipped_reason == "would be trade 2 of at most 1 today"


def test_exposure_in_dollars_refuses_the_pick_that_would_cross_it_but_a_later_smaller_one_fits() -> None:
    sizes = [pick("A", 10_000), pick("B", 10_000), pick("C", 5_000)]
    symbols, events = admitted(sizes, RiskLimits(max_exposure_usd=Decimal(15_000)))
    assert symbols == ["A", "C"]
    assert [(e.rule, e.symbol, e.observed) for e in events] == [(Rule.MAX_EXPOSURE_USD, "B", 20_000.0)]


def test_exposure_in_percent_of_equity() -> None:
    symbols, events = admitted([pick("A", 30_000), pick("B", 30_000)], RiskLimits(max_exposure_pct=Decimal(50)))
    assert symbols == ["A"]
    assert events[0].rule is Rule.MAX_EXPOSURE_PCT and events[0].observed == pytest.approx(60.0)


def test_notional_per_symbol() -> None:
    symbols, events = admitted([pick("A", 12_000), pick("B", 8_000)], RiskLimits(max_symbol_notional_usd=Decimal(10_000)))
    assert symbols == ["B"]
    assert events[0].rule is Rule.MAX_SYMBOL_NOTIONAL_USD


def test_a_halt_refuses_every_entry_under_the_rule_that_halted() -> None:
    halt = Halt(Rule.DAILY_LOSS_USD, "the day's loss $600.00 reached the $500.00 limit")
    symbols, events = admitted([pick("A", 10_000), pick("B", 10_000)], RiskLimits(), halted=halt)
    assert symbols == []
    assert {(e.rule, e.symbol) for e in events} == {(Rule.DAILY_LOSS_USD, "A"), (Rule.DAILY_LOSS_USD, "B")}
    assert "no new entries: the day's loss $600.00" in events[0].message


def test_picks_sizing_skipped_pass_through_untouched() -> None:
    skipped = PositionSize("A", Decimal(50), 0, Decimal(0), "no price")
    kept, events = admit_entries([skipped], RiskLimits(max_positions=1), Book(EQUITY), trade_date=DAY, now=NOW)
    assert kept == [skipped] and events == []


def test_the_same_verdict_on_the_same_day_has_the_same_event_id() -> None:
    _, first = admitted([pick("A", 10_000), pick("B", 10_000)], RiskLimits(max_positions=1))
    _, again = admitted([pick("A", 10_000), pick("B", 10_000)], RiskLimits(max_positions=1))
    assert first[0].event_id == again[0].event_id == "20240305-max_positions-refused-B"


@pytest.mark.parametrize(
    "field, value", [("daily_loss_usd", Decimal(0)), ("max_exposure_pct", Decimal(101)), ("max_positions", 0)]
)
def test_limits_refuse_values_that_make_no_sense(field: str, value) -> None:
    with pytest.raises(ValueError, match=field):
        RiskLimits(**{field: value})


# -- the daily loss limit -------------------------------------------------------------------------


def test_the_loss_limit_is_the_tighter_of_dollars_and_percent() -> None:
    limits = RiskLimits(daily_loss_usd=Decimal(1_500), daily_loss_pct=Decimal(1))
    assert limits.daily_loss_limit(EQUITY) == Decimal(1_000)
    assert RiskLimits(daily_loss_usd=Decimal(500)).daily_loss_limit(EQUITY) == Decimal(500)
    assert RiskLimits().daily_loss_limit(EQUITY) is None


def test_a_loss_exactly_at_the_limit_trips_and_one_cent_less_does_not() -> None:
    limits = RiskLimits(daily_loss_usd=Decimal(500))
    assert day_pnl_breach(Decimal("-499.99"), EQUITY, limits) is None
    rule, observed, limit, message = day_pnl_breach(Decimal(-500), EQUITY, limits)
    assert (rule, observed, limit) == (Rule.DAILY_LOSS_USD, 500.0, 500.0)
    assert "$500.00" in message


def test_the_percent_limit_is_of_the_days_starting_equity() -> None:
    breach = day_pnl_breach(Decimal(-2_000), EQUITY, RiskLimits(daily_loss_pct=Decimal(2)))
    assert breach is not None and breach[0] is Rule.DAILY_LOSS_PCT and breach[1] == pytest.approx(2.0)
    assert day_pnl_breach(Decimal(2_000), EQUITY, RiskLimits(daily_loss_pct=Decimal(2))) is None


def test_the_days_profit_target_trips_on_a_gain_and_never_on_a_loss() -> None:
    limits = RiskLimits(daily_profit_usd=Decimal(800), daily_profit_pct=Decimal(1))  # $800 is nearer than 1% ($1,000)
    assert limits.daily_profit_target(EQUITY) == Decimal(800)
    assert day_pnl_breach(Decimal("799.99"), EQUITY, limits) is None
    assert day_pnl_breach(Decimal(-5_000), EQUITY, limits) is None
    rule, observed, limit, message = day_pnl_breach(Decimal(800), EQUITY, limits)
    assert (rule, observed, limit) == (Rule.DAILY_PROFIT_USD, 800.0, 800.0)
    assert message.startswith("the day's profit $800.00")
    pct = day_pnl_breach(Decimal(1_000), EQUITY, RiskLimits(daily_profit_pct=Decimal(1)))
    assert pct is not None and pct[0] is Rule.DAILY_PROFIT_PCT and pct[1] == pytest.approx(1.0)


def test_a_loss_limit_and_a_profit_target_together_each_trip_on_their_side() -> None:
    limits = RiskLimits(daily_loss_usd=Decimal(300), daily_profit_usd=Decimal(300))
    assert day_pnl_breach(Decimal(-300), EQUITY, limits)[0] is Rule.DAILY_LOSS_USD
    assert day_pnl_breach(Decimal(300), EQUITY, limits)[0] is Rule.DAILY_PROFIT_USD
    assert day_pnl_breach(Decimal(299), EQUITY, limits) is None
    assert limits.watches_day_pnl and not RiskLimits(max_positions=3).watches_day_pnl


# -- the drawdown halt ----------------------------------------------------------------------------


def test_closing_equities_walk_back_from_the_latest() -> None:
    assert closing_equities(Decimal(97), [Decimal(5), Decimal(-2), Decimal(-6)]) == [Decimal(105), Decimal(103), Decimal(97)]
    assert closing_equities(Decimal(100), []) == [Decimal(100)]


def test_a_drawdown_past_the_limit_from_the_recent_peak_halts() -> None:
    limits = RiskLimits(max_drawdown_pct=Decimal(5), drawdown_sessions=3)
    equities = [Decimal(x) for x in (100, 110, 108, 104)]
    drawdown, message = drawdown_breach(equities, limits)
    assert drawdown == pytest.approx(100 * 6 / 110)
    assert "below its peak $110.00" in message
    assert drawdown_breach([Decimal(x) for x in (110, 108, 106)], limits) is None  # 3.6%


def test_the_drawdown_window_forgets_older_peaks() -> None:
    limits = RiskLimits(max_drawdown_pct=Decimal(5), drawdown_sessions=2)
    assert drawdown_breach([Decimal(x) for x in (200, 104, 102, 100)], limits) is None  # 200 is 3 sessions back


# -- the daily loss limit in a replay -------------------------------------------------------------

COSTS = FillCosts()


def sessions(*closes_per_session: list[float], minutes: list[np.ndarray] | None = None) -> SessionBars:
    """Sessions of flat bars (open = high = low = close), from 09:30 one a minute unless `minutes` says when."""
    closes = [np.round(np.asarray(c) * 10_000).astype(np.int64) for c in closes_per_session]
    starts = np.cumsum([0] + [len(c) for c in closes[:-1]]).astype(np.int64)
    prices = np.concatenate(closes)
    minutes = minutes or [OPEN_MINUTE + np.arange(len(c)) for c in closes]
    return SessionBars(starts, np.concatenate(minutes).astype(np.int32), prices, prices, prices, prices)


def test_no_trip_leaves_the_results_as_they_were() -> None:
    bars = sessions([50] * 30, [20] * 30)
    results = replay_sessions(bars, np.array([100, 100]), OPEN_MINUTE + 25)
    after, trip = day_limit_exits(bars, results, np.array([100, 100]), OPEN_MINUTE + 25, COSTS, loss_units=10_000 * 10_000)
    assert trip is None and after is results


def test_a_slide_trips_the_limit_and_flattens_at_the_next_bars_open() -> None:
    # Two positions of 100 shares; A slides 0.10 a minute from 50.00 (stop at 49.55 needs 5 bars), B is flat.
    a = [50.0, 49.9, 49.8, 49.7, 49.6, 49.5, 49.4] + [49.3] * 20
    bars = sessions(a, [20.0] * 27)
    shares = np.array([100, 100])
    policy_stop_far = replay_sessions(bars, shares, OPEN_MINUTE + 26)  # A stops at 49.5 (bar 5)
    limit = 31 * 10_000  # $31: A's entry commission $1 + B's $1 + A down $0.30 at 09:33 ... trips at 09:33's close ($32)

    after, trip = day_limit_exits(bars, policy_stop_far, shares, OPEN_MINUTE + 26, COSTS, loss_units=limit)

    assert trip is not None and trip.minute == OPEN_MINUTE + 3 and -trip.pnl == 32 * 10_000
    assert list(after.exit_code) == [KILL_SWITCH, KILL_SWITCH]
    assert list(after.exit_index) == [4, 27 + 4]  # the open of 09:34, each
    assert list(after.exit_price) == [49.6 * 10_000, 20 * 10_000]
    assert list(after.pnl) == [-40 * 10_000 - 2 * 10_000, -2 * 10_000]


def test_a_position_already_closed_counts_its_realised_pnl_and_is_left_alone() -> None:
    a = [50.0, 49.0] + [49.0] * 10  # gaps through its 49.55 stop at 09:31: -$100 and $2 commission
    b = [20.0] * 5 + [19.9] * 7  # then 1,000 B slide $0.10, above its 19.82 stop
    bars = sessions(a, b)
    shares = np.array([100, 1_000])
    results = replay_sessions(bars, shares, OPEN_MINUTE + 11)
    limit = 150 * 10_000

    after, trip = day_limit_exits(bars, results, shares, OPEN_MINUTE + 11, COSTS, loss_units=limit)

    assert trip is not None and trip.minute == OPEN_MINUTE + 5 and -trip.pnl == 207 * 10_000  # -102 - 100 - $5
    assert after.exit_code[0] == results.exit_code[0] and after.pnl[0] == results.pnl[0]
    assert after.exit_code[1] == KILL_SWITCH and after.exit_index[1] == 12 + 6


def test_the_last_check_is_two_minutes_before_the_liquidation() -> None:
    bars = sessions([50.0] * 8 + [40.0] * 4)  # the drop is in the 09:38 bar
    shares = np.array([100])
    results = replay_sessions(bars, shares, OPEN_MINUTE + 9)  # liquidation 09:39: last check sees 09:37
    assert results.exit_code[0] != KILL_SWITCH
    after, trip = day_limit_exits(bars, results, shares, OPEN_MINUTE + 9, COSTS, loss_units=10 * 10_000)
    assert trip is None  # the stop, not the limit, handles it
    bars_late = sessions([50.0] * 7 + [49.7] + [49.7] * 4)  # a $30 loss at 09:37: seen, trips
    results_late = replay_sessions(bars_late, shares, OPEN_MINUTE + 9)
    after, trip = day_limit_exits(bars_late, results_late, shares, OPEN_MINUTE + 9, COSTS, loss_units=30 * 10_000)
    assert trip is not None and trip.minute == OPEN_MINUTE + 7 and after.exit_code[0] == KILL_SWITCH


def test_a_rally_reaches_the_days_profit_target_and_flattens_at_the_next_bars_open() -> None:
    # Two positions of 100 shares: A rises 0.10 a minute from 50.00 (its +2.6% target is far), B is flat.
    a = [50.0, 50.1, 50.2, 50.3, 50.4, 50.5] + [50.6] * 20
    bars = sessions(a, [20.0] * 26)
    shares = np.array([100, 100])
    results = replay_sessions(bars, shares, OPEN_MINUTE + 25)
    target = 28 * 10_000  # A up $30 at 09:33's close, less both entry commissions ($2): $28

    after, trip = day_limit_exits(bars, results, shares, OPEN_MINUTE + 25, COSTS, target_units=target)

    assert trip is not None and (trip.minute, trip.pnl, trip.code) == (OPEN_MINUTE + 3, 28 * 10_000, DAY_TARGET)
    assert list(after.exit_code) == [DAY_TARGET, DAY_TARGET]
    assert list(after.exit_price) == [50.4 * 10_000, 20 * 10_000]  # the open of 09:34
    _, no_trip = day_limit_exits(bars, results, shares, OPEN_MINUTE + 25, COSTS, loss_units=target)
    assert no_trip is None  # a gain never trips the loss limit


def reference_trip(bars: SessionBars, results, shares, limit_units: int, liquidation_minute: int, target_units=None):
    """The monitor's check, minute by minute in plain Python: the first bar minute whose close trips a limit."""
    ends = list(bars.ends)
    for check in range(OPEN_MINUTE, liquidation_minute - 1):
        total = 0
        for i, start in enumerate(bars.starts):
            if not results.filled[i]:
                continue
            exit_i = int(results.exit_index[i])
            if exit_i >= 0 and results.exit_code[i] != EOD and int(bars.minute[exit_i]) <= check:
                total += int(results.pnl[i])
                continue
            mark = int(results.entry_price[i])
            for j in range(start, ends[i]):
                if bars.minute[j] <= check:
                    mark = int(bars.close[j])
            total += (mark - int(results.entry_price[i])) * int(shares[i]) - int(COSTS.commission_units(shares[i]))
        if -total >= limit_units:
            return check, -total, KILL_SWITCH
        if target_units is not None and total >= target_units:
            return check, -total, DAY_TARGET
    return None


def test_the_vectorised_trip_equals_the_minute_by_minute_check_on_random_days() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 6))
        closes, minutes = [], []
        for _ in range(n):
            length = int(rng.integers(5, 40))
            path = 50 + np.cumsum(rng.normal(0, 0.15, length)).round(2)
            closes.append(list(np.maximum(path, 1.0)))
            gaps = rng.integers(1, 3, length)  # missing minutes: a bar every one or two minutes
            gaps[0] = 0
            minutes.append(OPEN_MINUTE + np.cumsum(gaps))
        bars = sessions(*closes, minutes=minutes)
        shares = rng.integers(10, 500, n)
        liquidation = OPEN_MINUTE + int(rng.integers(5, 45))
        results = replay_sessions(bars, shares, liquidation)
        limit = int(rng.integers(1, 400)) * 10_000
        target = int(rng.integers(1, 400)) * 10_000 if rng.random() < 0.5 else None
        _, trip = day_limit_exits(bars, results, shares, liquidation, COSTS, loss_units=limit, target_units=target)
        expected = reference_trip(bars, results, shares, limit, liquidation, target)
        assert (None if trip is None else (trip.minute, -trip.pnl, trip.code)) == expected


def test_outages_and_fallbacks_keep_one_row_each_time_they_happen() -> None:
    from openbell.core.risk import RiskEvent

    first = RiskEvent(DAY, NOW.replace(hour=11, minute=0), Rule.BROKER_OUTAGE, Action.FALLBACK, "down")
    second = RiskEvent(DAY, NOW.replace(hour=13, minute=5), Rule.BROKER_OUTAGE, Action.FALLBACK, "down again")
    assert first.event_id != second.event_id
    assert first.event_id == "20240305-broker_outage-fallback-*-1100"
