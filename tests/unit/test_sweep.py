"""Exit-policy sweeps: every combination equals its own replay, and hand-built sessions exit as worked out.

The random sessions are short (3-40 bars) and built to hit the edges of the fill model: gaps
through levels, bars that touch both levels, bars exactly on a level, missing 09:30 bars,
sessions that end before the liquidation time, zero shares, sub-dollar prices on the $0.0001
tick. `test_random_sessions_cover_every_edge_of_the_fill_model` checks that they do.
"""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal

import numpy as np
import pytest

from openbell.core.backtest import EOD, FillCosts, SessionBars, SessionResults, replay_sessions
from openbell.core.exits import ExitCode, ExitPolicy
from openbell.core.sweep import ExitGrid, SweepResults, sweep_exits

D = Decimal
UNITS = 10_000  # $0.0001 price units, as the engine counts them
TARGET, STOP = int(ExitCode.TARGET), int(ExitCode.STOP)
FIELDS = tuple(field.name for field in fields(SessionResults))  # filled, entry_index, ... pnl: every one


def hm(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def units(price: str) -> int:
    value = D(price) * UNITS
    assert value == value.to_integral_value(), f"{price} is finer than $0.0001"
    return int(value)


def dollars(value_units: int) -> Decimal:
    return D(int(value_units)) / UNITS


def session_bars(sessions: list[list[tuple[str, str, str, str, str]]]) -> SessionBars:
    """Sessions of (hh:mm, open, high, low, close) bars, in dollars, as the engine's flat arrays."""
    rows = [row for session in sessions for row in session]
    lengths = [len(session) for session in sessions]
    columns = list(zip(*rows, strict=True)) or [()] * 5
    return SessionBars(
        starts=np.cumsum([0, *lengths[:-1]], dtype=np.int64)[: len(sessions)],
        minute=np.array([hm(m) for m in columns[0]], dtype=np.int32),
        open=np.array([units(p) for p in columns[1]], dtype=np.int64),
        high=np.array([units(p) for p in columns[2]], dtype=np.int64),
        low=np.array([units(p) for p in columns[3]], dtype=np.int64),
        close=np.array([units(p) for p in columns[4]], dtype=np.int64),
    )


def mismatches(
    bars: SessionBars, shares: np.ndarray, grid: ExitGrid, results: SweepResults, costs: FillCosts
) -> list[tuple]:
    """(target %, stop %, liquidation choice, field, first mismatching session) wherever a combination
    differs from the replay of its policy; combinations in the documented order, target-major."""
    found = []
    n_sessions = len(bars.starts)
    for k, target in enumerate(grid.targets_pct):
        for m, stop in enumerate(grid.stops_pct):
            for j, minutes in enumerate(grid.liquidation_minutes):
                c = (k * grid.n_stops + m) * grid.n_liquidations + j
                minutes = np.broadcast_to(minutes, (n_sessions,))
                expected = replay_sessions(bars, shares, minutes, ExitPolicy(target, stop), costs)
                actual = results.session_results(c)
                for field in FIELDS:
                    differs = np.flatnonzero(np.asarray(getattr(expected, field)) != np.asarray(getattr(actual, field)))
                    if len(differs):
                        found.append((target, stop, j, field, int(differs[0])))
    return found


# -- random sessions --------------------------------------------------------------------------

N_SESSIONS = 600
TARGETS = tuple(D(t) for t in ("0.001", "0.05", "0.4", "1", "2.6", "7.5", "60", "900"))
STOPS = tuple(D(s) for s in ("0.001", "0.05", "0.3", "0.9", "2", "10", "99.9"))


def _on_tick(price_units: np.ndarray) -> np.ndarray:
    """Snap raw unit prices onto the tick grid ($0.01 from $1, $0.0001 below); monotone, so bars stay valid."""
    price_units = np.maximum(np.rint(price_units).astype(np.int64), 1)
    return np.where(price_units >= UNITS, (price_units + 50) // 100 * 100, price_units)


def _level(entry: int, factor: Decimal) -> int:
    """A level as the engine rounds it (half up to the tick of the unrounded price)."""
    raw = D(entry) * factor
    tick = 100 if raw >= UNITS else 1
    return int((raw / tick).quantize(D(1), rounding="ROUND_HALF_UP")) * tick


def random_session(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(minute, open, high, low, close) of one short session; sometimes empty or without its 09:30 bar."""
    if rng.random() < 0.01:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(5))
    n = int(rng.integers(3, 41))
    first = hm("09:30") if rng.random() >= 0.06 else hm("09:30") + int(rng.integers(1, 4))
    minutes = first + np.concatenate([[0], np.cumsum(rng.choice([1, 1, 1, 2, 7], n - 1))])
    kind = rng.random()
    if kind < 0.2:
        opening = rng.uniform(0.05, 0.95)  # sub-dollar: the $0.0001 tick
    elif kind < 0.3:
        opening = rng.uniform(0.97, 1.03)  # around the $1 tick boundary
    else:
        opening = float(np.exp(rng.uniform(np.log(1.5), np.log(400.0))))
    sigma = rng.choice([0.0005, 0.003, 0.01, 0.03])
    jumps = np.where(rng.random(n) < 0.1, rng.normal(0, 0.04, n), 0.0)  # gaps at the open of a bar
    closes = opening * np.exp(np.cumsum(jumps + rng.normal(0, sigma, n)))
    opens = np.concatenate([[opening], closes[:-1] * np.exp(jumps[1:])])
    highs = np.maximum(opens, closes) * (1 + np.abs(rng.normal(0, sigma, n)))
    lows = np.minimum(opens, closes) * (1 - np.abs(rng.normal(0, sigma, n)))
    o, h, l, c = (_on_tick(x * UNITS) for x in (opens, highs, lows, closes))

    # Put some bars exactly on a level of the grid, where off-by-one comparisons hide.
    entry = int(o[0])
    levels = [_level(entry, 1 + t / 100) for t in TARGETS[:6]] + [_level(entry, 1 - s / 100) for s in STOPS[:6]]
    for i in np.flatnonzero(rng.random(n) < 0.15):
        level = max(levels[rng.integers(len(levels))], 1)
        field = rng.integers(3)
        if field == 0:
            o[i] = level
        elif field == 1:
            h[i] = level
        else:
            l[i] = level
        h[i] = max(h[i], o[i], c[i], l[i])
        l[i] = min(l[i], o[i], c[i], h[i])
    return minutes, o, h, l, c


def random_sessions() -> tuple[SessionBars, np.ndarray, np.ndarray]:
    """(bars, shares, liquidation minutes (2, n_sessions)): a regular day's liquidation and a half day's."""
    rng = np.random.default_rng(20250303)
    sessions = [random_session(rng) for _ in range(N_SESSIONS)]
    lengths = [len(session[0]) for session in sessions]
    minute, open_, high, low, close = (np.concatenate([s[field] for s in sessions]) for field in range(5))
    bars = SessionBars(
        starts=np.cumsum([0, *lengths[:-1]]).astype(np.int64),
        minute=minute.astype(np.int32),
        open=open_,
        high=high,
        low=low,
        close=close,
    )
    shares = np.where(rng.random(N_SESSIONS) < 0.05, 0, rng.integers(1, 5000, N_SESSIONS))
    # Sessions of 3-40 bars, one to seven minutes apart, end from 09:32 on: 10:00 falls inside some, after others.
    regular = np.full(N_SESSIONS, hm("10:00"))
    half_day = np.where(rng.random(N_SESSIONS) < 0.4, rng.integers(hm("09:30"), hm("09:50"), N_SESSIONS), hm("10:00"))
    return bars, shares, np.stack([regular, half_day])


@pytest.fixture(scope="module")
def random_market() -> tuple[SessionBars, np.ndarray, np.ndarray]:
    return random_sessions()


@pytest.mark.parametrize("slippage_bps", ["0", "7.5"])
def test_every_combination_equals_its_replay_on_random_sessions(random_market, slippage_bps):
    bars, shares, liquidation = random_market
    costs = FillCosts(slippage_bps=D(slippage_bps))
    grid = ExitGrid(TARGETS, STOPS, liquidation)

    results = sweep_exits(bars, shares, grid, costs)

    assert mismatches(bars, shares, grid, results, costs) == []


def test_random_sessions_cover_every_edge_of_the_fill_model(random_market):
    bars, shares, liquidation = random_market
    lengths = bars.ends - bars.starts
    has_opening = np.zeros(len(lengths), dtype=bool)
    has_opening[lengths > 0] = bars.minute[bars.starts[lengths > 0]] == hm("09:30")
    seen = dict.fromkeys(("target at open", "target at level", "stop at open", "stop at level", "both levels in one bar",
                          "liquidated at an open", "liquidated at the last close", "liquidated at the entry bar"), 0)  # fmt: skip
    for target in TARGETS:
        for stop in STOPS:
            for minutes in liquidation:
                result = replay_sessions(bars, shares, minutes, ExitPolicy(target, stop))
                at = np.maximum(result.exit_index, 0)
                code, price, opened = result.exit_code, result.exit_price, bars.open[at]
                seen["target at open"] += np.sum((code == TARGET) & (price == opened) & (price > result.target))
                seen["target at level"] += np.sum((code == TARGET) & (price == result.target) & (opened < price))
                seen["stop at open"] += np.sum((code == STOP) & (price == opened) & (price < result.stop))
                seen["stop at level"] += np.sum((code == STOP) & (price == result.stop) & (opened > price))
                seen["both levels in one bar"] += np.sum(
                    (code > 0) & (code != EOD) & (bars.high[at] >= result.target) & (bars.low[at] <= result.stop)
                )
                seen["liquidated at an open"] += np.sum((code == EOD) & (result.exit_index > result.entry_index))
                seen["liquidated at the last close"] += np.sum((code == EOD) & (result.exit_index == -1))
                seen["liquidated at the entry bar"] += np.sum((code == EOD) & (result.exit_index == result.entry_index))

    assert {name: count > 0 for name, count in seen.items()} == dict.fromkeys(seen, True)
    assert (~has_opening & (lengths > 0)).sum() > 0  # sessions without a 09:30 bar
    assert (lengths == 0).sum() > 0
    assert (has_opening & (shares == 0)).sum() > 0
    assert (has_opening & (bars.open[np.minimum(bars.starts, bars.n_bars - 1)] < UNITS)).sum() > 0  # sub-dollar entries
    assert (liquidation[0] != liquidation[1]).sum() > 0


def test_sweep_reuses_entries_across_combinations(random_market):
    bars, shares, liquidation = random_market
    baseline = replay_sessions(bars, shares, liquidation[0], ExitPolicy(TARGETS[0], STOPS[0]))

    results = sweep_exits(bars, shares, ExitGrid(TARGETS[:2], STOPS[:2], liquidation))

    assert results.exit_code.shape == results.pnl.shape == (2 * 2 * 2, N_SESSIONS)
    assert (results.filled.tolist(), results.entry_price.tolist()) == (
        baseline.filled.tolist(),
        baseline.entry_price.tolist(),
    )


# -- hand-built sessions ----------------------------------------------------------------------
# A $100.00 opening print, 100 shares: target 102.60 (+2.6%), stop 99.10 (-0.9%), $1.00 per order.

OPENING = ("09:30", "100.00", "100.40", "99.60", "100.20")
DEFAULT_GRID = ExitGrid([D("2.6")], [D("0.9")], [[hm("15:45")]])


def swept_one(session: list[tuple[str, ...]], grid: ExitGrid = DEFAULT_GRID) -> list[tuple]:
    """(reason, exit price, exit minute, pnl) in dollars for each combination of the grid on one session."""
    bars = session_bars([session])
    results = sweep_exits(bars, np.array([100]), grid)
    reasons = {TARGET: "target", STOP: "stop", EOD: "eod"}
    return [
        (
            reasons.get(int(results.exit_code[c, 0])),
            dollars(results.exit_price[c, 0]),
            int(bars.minute[results.exit_index[c, 0]]) if results.exit_index[c, 0] >= 0 else None,
            dollars(results.pnl[c, 0]),
        )
        for c in range(grid.n_combinations)
    ]


def test_target_fills_at_target_price_when_high_reaches_it():
    session = [OPENING, ("09:31", "100.30", "102.70", "100.10", "102.00")]

    assert swept_one(session) == [("target", D("102.60"), hm("09:31"), D("258.00"))]  # 2.60 x 100 - 2 x $1


def test_stop_fills_at_stop_price_when_low_reaches_it():
    session = [OPENING, ("09:31", "99.80", "99.90", "99.00", "99.50")]

    assert swept_one(session) == [("stop", D("99.10"), hm("09:31"), D("-92.00"))]  # -0.90 x 100 - 2 x $1


def test_stop_wins_when_one_bar_touches_both_levels():
    session = [OPENING, ("09:31", "100.00", "103.00", "99.00", "102.90")]

    assert swept_one(session) == [("stop", D("99.10"), hm("09:31"), D("-92.00"))]


def test_untouched_levels_liquidate_at_open_of_bar_at_liquidation_time():
    session = [OPENING, ("12:00", "100.60", "100.60", "100.60", "100.60"), ("15:45", "100.70", "110.00", "90.00", "100.80")]

    assert swept_one(session) == [("eod", D("100.70"), hm("15:45"), D("68.00"))]  # 0.70 x 100 - 2 x $1


def test_session_without_0930_bar_is_unfilled_in_every_combination():
    session = [("09:31", "100.00", "110.00", "90.00", "100.00"), ("15:50", "100.00", "100.00", "100.00", "100.00")]

    assert swept_one(session) == [(None, D(0), None, D(0))]


def test_combinations_run_target_major_then_stop_then_liquidation():
    # Target 1% (101.00) is reached at 09:31; target 2.6% never. Stop 0.9% (99.10) is reached at 09:32,
    # stop 5% (95.00) never before 15:45. A 09:32 liquidation sells at that bar's open before its low counts.
    session = [
        OPENING,
        ("09:31", "100.30", "101.50", "100.10", "101.20"),
        ("09:32", "101.20", "101.30", "97.00", "97.50"),
        ("15:45", "96.00", "96.00", "96.00", "96.00"),
    ]
    grid = ExitGrid([D("1"), D("2.6")], [D("0.9"), D("5")], [[hm("15:45")], [hm("09:32")]])

    assert swept_one(session, grid) == [
        ("target", D("101.00"), hm("09:31"), D("98.00")),  # 1%, 0.9%, 15:45
        ("target", D("101.00"), hm("09:31"), D("98.00")),  # 1%, 0.9%, 09:32
        ("target", D("101.00"), hm("09:31"), D("98.00")),  # 1%, 5%, 15:45
        ("target", D("101.00"), hm("09:31"), D("98.00")),  # 1%, 5%, 09:32
        ("stop", D("99.10"), hm("09:32"), D("-92.00")),  # 2.6%, 0.9%, 15:45
        ("eod", D("101.20"), hm("09:32"), D("118.00")),  # 2.6%, 0.9%, 09:32
        ("eod", D("96.00"), hm("15:45"), D("-402.00")),  # 2.6%, 5%, 15:45
        ("eod", D("101.20"), hm("09:32"), D("118.00")),  # 2.6%, 5%, 09:32
    ]


def test_combination_table_names_each_combination():
    grid = ExitGrid([D("1"), D("2.6")], [D("0.9"), D("5")], [[hm("15:45")], [hm("09:32")]])

    results = sweep_exits(session_bars([[OPENING]]), np.array([100]), grid)

    assert list(zip(results.target_pct, results.stop_pct, results.liquidation_index.tolist())) == [
        (D("1"), D("0.9"), 0), (D("1"), D("0.9"), 1), (D("1"), D("5"), 0), (D("1"), D("5"), 1),
        (D("2.6"), D("0.9"), 0), (D("2.6"), D("0.9"), 1), (D("2.6"), D("5"), 0), (D("2.6"), D("5"), 1),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("sessions", "shares"),
    [([], []), ([[]], [100]), ([[OPENING, ("09:31", "100.30", "103.00", "99.00", "102.00")]], [0])],
    ids=["no sessions", "a session without bars", "zero shares"],
)
def test_sessions_without_fills_trade_in_no_combination(sessions, shares):
    bars = session_bars(sessions)
    grid = ExitGrid([D("1"), D("2.6")], [D("0.9")], [[hm("15:45")]])

    results = sweep_exits(bars, np.array(shares, dtype=np.int64), grid)

    assert results.exit_code.shape == (2, len(shares))
    assert (results.exit_code.tolist(), results.exit_index.tolist(), results.exit_price.tolist(), results.pnl.tolist()) == (
        [[0] * len(shares)] * 2, [[-1] * len(shares)] * 2, [[0] * len(shares)] * 2, [[0] * len(shares)] * 2,
    )  # fmt: skip


# -- input checks -----------------------------------------------------------------------------


def test_grid_rejects_a_target_the_exit_policy_rejects():
    with pytest.raises(ValueError, match="target_pct"):
        ExitGrid([D("2.6"), D("0")], [D("0.9")], [[hm("15:45")]])


def test_grid_rejects_float_percentages():
    with pytest.raises(TypeError, match="Decimal"):
        ExitGrid([2.6], [D("0.9")], [[hm("15:45")]])


def test_grid_rejects_liquidation_minutes_without_a_row_per_choice():
    with pytest.raises(ValueError, match="one row per liquidation choice"):
        ExitGrid([D("2.6")], [D("0.9")], [hm("15:45"), hm("12:45")])


def test_sweep_rejects_liquidation_minutes_for_another_number_of_sessions():
    bars = session_bars([[OPENING], [OPENING], [OPENING]])

    with pytest.raises(ValueError, match="one per session"):
        sweep_exits(bars, np.array([100, 100, 100]), ExitGrid([D("2.6")], [D("0.9")], [[hm("15:45"), hm("15:45")]]))


def test_sweep_rejects_bars_out_of_time_order():
    bars = session_bars([[OPENING, ("09:32", "100", "100", "100", "100"), ("09:31", "100", "100", "100", "100")]])

    with pytest.raises(ValueError, match="time order"):
        sweep_exits(bars, np.array([100]), DEFAULT_GRID)
