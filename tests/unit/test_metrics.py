"""Performance metrics: worked out by hand on small series, and checked against quantstats on a random one."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import quantstats.stats as qs

from openbell.core.metrics import METRIC_LABELS, METRIC_ORDER, drawdown_pct, performance_metrics
from openbell.research.results import TRADE_COLUMNS

START = 10_000.0
NO_TRADES = pd.DataFrame(columns=list(TRADE_COLUMNS))


def daily_table(equity: list[float], pnl: list[float] | None = None, exposure: list[float] | None = None) -> pd.DataFrame:
    n = len(equity)
    return pd.DataFrame(
        {
            "trade_date": [date(2025, 3, 3) + timedelta(days=i) for i in range(n)],
            "equity": equity,
            "pnl": pnl if pnl is not None else [0.0] * n,
            "exposure": exposure if exposure is not None else [0.0] * n,
        }
    )


def trade_table(*trades: tuple[float, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"trade_date": date(2025, 3, 3), "pnl": pnl, "return_pct": pnl / 100, "exit_reason": reason}
            for pnl, reason in trades
        ]
    )


# Daily returns +2%, -5%, +5%, +1%, -1% from $10,000:
# 10,200 (peak) -> 9,690 -> 10,174.5 -> 10,276.245 (new peak: recovered) -> 10,173.48255
FIVE_SESSIONS = daily_table(
    [10_200.0, 9_690.0, 10_174.5, 10_276.245, 10_173.48255],
    pnl=[200.0, -510.0, 484.5, 101.745, -102.76245],
    exposure=[0.5, 1.0, 0.0, 0.25, 0.75],
)


def test_returns_and_risk_of_a_five_session_path_match_the_hand_computation():
    m = performance_metrics(FIVE_SESSIONS, NO_TRADES, START)

    # growth 1.02 x 0.95 x 1.05 x 1.01 x 0.99 = 1.017348255
    assert m["total_return_pct"] == pytest.approx(1.7348255, rel=1e-9)
    # years = 5 sessions / 252
    assert m["cagr_pct"] == pytest.approx((1.017348255 ** (252 / 5) - 1) * 100, rel=1e-9)
    # mean 0.02 / 5 = 0.004; deviations .016 -.054 .046 .006 -.014, squares sum 0.00552, / 4 = 0.00138
    assert m["volatility_ann_pct"] == pytest.approx(math.sqrt(0.00138) * math.sqrt(252) * 100, rel=1e-9)
    assert m["sharpe"] == pytest.approx(0.004 / math.sqrt(0.00138) * math.sqrt(252), rel=1e-9)  # 1.7093
    # downside: (0.05^2 + 0.01^2) / 5 sessions = 0.0026 / 5 = 0.00052
    assert m["sortino"] == pytest.approx(0.004 / math.sqrt(0.00052) * math.sqrt(252), rel=1e-9)  # 2.7846
    # worst close against its peak: 9,690 / 10,200 - 1 = -5%
    assert m["max_drawdown_pct"] == pytest.approx(-5.0, rel=1e-9)
    assert m["calmar"] == pytest.approx(m["cagr_pct"] / 5.0, rel=1e-9)
    assert m["sessions"] == 5.0


def test_drawdown_duration_counts_the_sessions_under_water_until_recovery():
    # under water on sessions 2 and 3 (back above the peak on 4), then again on 5: the longest run is 2
    m = performance_metrics(FIVE_SESSIONS, NO_TRADES, START)

    assert m["max_drawdown_sessions"] == 2.0


def test_a_drawdown_still_open_at_the_end_counts_the_sessions_it_has_lasted():
    # start 100: 101 (peak), 100 (under), 102 (peak), 101, 100.5, 101.5 (under to the end): runs of 1 and 3
    daily = daily_table([101.0, 100.0, 102.0, 101.0, 100.5, 101.5])

    m = performance_metrics(daily, NO_TRADES, 100.0)

    assert m["max_drawdown_sessions"] == 3.0
    assert m["max_drawdown_pct"] == pytest.approx((100.5 / 102 - 1) * 100, rel=1e-12)  # -1.4706%


def test_a_loss_on_the_first_session_is_a_drawdown_from_the_starting_equity():
    # start 100: 99 is 1% under the starting equity; 100 is back at the peak, which ends the drawdown
    daily = daily_table([99.0, 100.0, 101.0])

    m = performance_metrics(daily, NO_TRADES, 100.0)

    assert m["max_drawdown_pct"] == pytest.approx(-1.0, rel=1e-12)
    assert m["max_drawdown_sessions"] == 1.0


def test_an_equity_back_at_its_peak_through_a_float_sum_has_recovered():
    # +$0.02, -$0.02, +$0.01, +$0.01 from $100,000: back at $100,000.02 in cents, a hair below in floats
    equity = list(np.cumsum([100_000.0, 0.02, -0.02, 0.01, 0.01, -0.01])[1:])
    assert equity[3] < equity[0]  # the float sum really does fall short of the peak

    m = performance_metrics(daily_table(equity), NO_TRADES, 100_000.0)

    # under water on sessions 2 and 3 only; session 5 is a new 1-session drawdown
    assert m["max_drawdown_sessions"] == 2.0


def test_drawdown_pct_measures_each_close_against_the_running_peak_including_the_start():
    equity = pd.Series([9_900.0, 10_200.0, 9_690.0, 10_404.0], index=[10, 11, 12, 13])

    dd = drawdown_pct(equity, START)

    # 9,900 / 10,000; at the peak; 9,690 / 10,200; new peak
    assert dd.tolist() == pytest.approx([-1.0, 0.0, -5.0, 0.0], abs=1e-12)
    assert dd.index.tolist() == [10, 11, 12, 13]


def test_exposure_and_best_and_worst_day_come_from_the_daily_table():
    m = performance_metrics(FIVE_SESSIONS, NO_TRADES, START)

    # (0.5 + 1.0 + 0.0 + 0.25 + 0.75) / 5 = 0.5
    assert m["exposure_pct"] == pytest.approx(50.0)
    assert m["best_day_usd"] == 484.5
    assert m["worst_day_usd"] == -510.0


SIX_TRADES = trade_table((300.0, "target"), (-100.0, "stop"), (-50.0, "stop"), (-30.0, "halt"), (100.0, "eod"), (0.0, "eod"))


def test_trade_statistics_match_the_hand_computation():
    m = performance_metrics(FIVE_SESSIONS, SIX_TRADES, START)

    assert m["trades"] == 6.0
    # wins 300 and 100 (the break-even trade is neither a win nor a loss): 2 / 6
    assert m["win_rate_pct"] == pytest.approx(100 * 2 / 6)
    # gross wins 400, gross losses 100 + 50 + 30 = 180
    assert m["profit_factor"] == pytest.approx(400 / 180)  # 2.2222
    # net 300 - 180 + 100 + 0 = 220 over 6 trades
    assert m["expectancy_usd"] == pytest.approx(220 / 6)  # 36.67
    assert m["avg_win_usd"] == pytest.approx(200.0)
    assert m["avg_loss_usd"] == pytest.approx(-60.0)
    assert m["payoff_ratio"] == pytest.approx(200 / 60)  # 3.3333


def test_exits_are_counted_by_reason_including_reasons_beyond_the_usual_three():
    m = performance_metrics(FIVE_SESSIONS, SIX_TRADES, START)

    counts = {key: value for key, value in m.items() if key.startswith("trades_")}
    assert counts == {"trades_target": 1.0, "trades_stop": 2.0, "trades_eod": 2.0, "trades_halt": 1.0}


def test_metrics_come_in_report_order_each_with_a_label_and_other_exit_reasons_last():
    m = performance_metrics(FIVE_SESSIONS, SIX_TRADES, START)

    assert list(m) == [*METRIC_ORDER, "trades_halt"]
    assert set(METRIC_LABELS) == set(METRIC_ORDER)
    assert all(type(value) is float for value in m.values())


def test_without_trades_the_trade_statistics_are_nan_and_the_counts_zero():
    m = performance_metrics(FIVE_SESSIONS, NO_TRADES, START)

    for key in ("win_rate_pct", "profit_factor", "expectancy_usd", "payoff_ratio", "avg_win_usd", "avg_loss_usd"):
        assert math.isnan(m[key]), key
    assert (m["trades"], m["trades_target"], m["trades_stop"], m["trades_eod"]) == (0.0, 0.0, 0.0, 0.0)
    assert not math.isnan(m["sharpe"])  # the daily metrics do not depend on trades


def test_an_empty_trades_frame_without_columns_means_no_trades():
    m = performance_metrics(FIVE_SESSIONS, pd.DataFrame(), START)

    assert m["trades"] == 0.0
    assert math.isnan(m["profit_factor"])


def test_all_winners_give_an_infinite_profit_factor_and_no_payoff_ratio():
    m = performance_metrics(FIVE_SESSIONS, trade_table((50.0, "target"), (10.0, "eod")), START)

    assert m["profit_factor"] == math.inf
    assert m["win_rate_pct"] == 100.0
    assert math.isnan(m["avg_loss_usd"])
    assert math.isnan(m["payoff_ratio"])


def test_all_losers_give_a_zero_profit_factor():
    m = performance_metrics(FIVE_SESSIONS, trade_table((-50.0, "stop"), (-10.0, "eod")), START)

    assert m["profit_factor"] == 0.0
    assert m["win_rate_pct"] == 0.0
    assert math.isnan(m["avg_win_usd"])


def test_one_session_has_no_volatility_sharpe_or_sortino():
    m = performance_metrics(daily_table([9_900.0], pnl=[-100.0]), NO_TRADES, START)

    assert math.isnan(m["volatility_ann_pct"])
    assert math.isnan(m["sharpe"])
    assert math.isnan(m["sortino"])
    assert m["total_return_pct"] == pytest.approx(-1.0)
    assert m["max_drawdown_pct"] == pytest.approx(-1.0)
    assert m["max_drawdown_sessions"] == 1.0
    # 0.99 ** 252 - 1: one session is 1/252 of a year
    assert m["cagr_pct"] == pytest.approx((0.99**252 - 1) * 100)


def test_an_equity_below_zero_has_no_cagr():
    # start 100: 50, then -10 (a loss beyond the account); a negative growth has no real root
    m = performance_metrics(daily_table([50.0, -10.0]), NO_TRADES, 100.0)

    assert m["total_return_pct"] == pytest.approx(-110.0)
    assert math.isnan(m["cagr_pct"])
    assert math.isnan(m["calmar"])


def test_flat_equity_has_zero_volatility_and_no_risk_ratios():
    m = performance_metrics(daily_table([START] * 4), NO_TRADES, START)

    assert m["volatility_ann_pct"] == 0.0
    assert m["max_drawdown_pct"] == 0.0
    assert m["max_drawdown_sessions"] == 0.0
    assert math.isnan(m["sharpe"])
    assert math.isnan(m["sortino"])
    assert math.isnan(m["calmar"])


def test_a_constant_daily_return_has_no_sharpe_rather_than_one_from_rounding_noise():
    # +1% every session: zero spread in exact arithmetic, about 1e-16 in floats
    equity = [START * 1.01**k for k in range(1, 6)]

    m = performance_metrics(daily_table(equity), NO_TRADES, START)

    assert m["volatility_ann_pct"] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(m["sharpe"])


def test_a_path_without_a_losing_session_has_no_sortino():
    m = performance_metrics(daily_table([10_100.0, 10_100.0, 10_300.0]), NO_TRADES, START)

    assert m["sharpe"] > 0
    assert math.isnan(m["sortino"])


def test_empty_daily_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="daily has no sessions"):
        performance_metrics(daily_table([]), NO_TRADES, START)


def test_daily_out_of_date_order_is_refused():
    daily = FIVE_SESSIONS.iloc[[1, 0, 2, 3, 4]]

    with pytest.raises(ValueError, match="in date order"):
        performance_metrics(daily, NO_TRADES, START)


def test_a_non_positive_starting_equity_is_refused():
    with pytest.raises(ValueError, match="starting_equity must be positive"):
        performance_metrics(FIVE_SESSIONS, NO_TRADES, 0.0)


# --- against quantstats -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_path():
    """250 sessions of seeded returns from $100,000, opening with a loss (quantstats' baseline case)."""
    rng = np.random.default_rng(20250307)
    returns = rng.normal(0.0006, 0.012, 250)
    returns[0] = -0.02
    index = pd.bdate_range("2024-01-02", periods=len(returns))
    equity = 100_000.0 * np.cumprod(1 + returns)
    daily = pd.DataFrame(
        {
            "trade_date": index.date,
            "equity": equity,
            "pnl": np.diff(equity, prepend=100_000.0),
            "exposure": np.full(len(returns), 0.8),
        }
    )
    return daily, pd.Series(returns, index=index)


def test_sharpe_sortino_and_volatility_match_quantstats(random_path):
    daily, returns = random_path

    m = performance_metrics(daily, NO_TRADES, 100_000.0)

    assert m["sharpe"] == pytest.approx(qs.sharpe(returns, periods=252), rel=1e-9)
    # quantstats' downside deviation: sqrt(sum(min(r, 0)^2) / all sessions), the one used here
    assert m["sortino"] == pytest.approx(qs.sortino(returns, periods=252), rel=1e-9)
    assert m["volatility_ann_pct"] == pytest.approx(qs.volatility(returns, periods=252) * 100, rel=1e-9)


def test_max_drawdown_and_its_duration_match_quantstats(random_path):
    daily, returns = random_path

    m = performance_metrics(daily, NO_TRADES, 100_000.0)

    # quantstats rebuilds equity from 1.0 and puts a baseline before the first session, like our starting equity
    assert m["max_drawdown_pct"] == pytest.approx(qs.max_drawdown(returns) * 100, rel=1e-9)
    # quantstats' drawdown periods run from the first to the last session under water; count their sessions
    periods = qs.drawdown_details(qs.to_drawdown_series(returns))
    longest = max(len(returns[pd.Timestamp(p.start) : pd.Timestamp(p.end)]) for p in periods.itertuples())
    assert m["max_drawdown_sessions"] == longest
    assert longest > 5  # the random path has a drawdown worth the name


def test_cagr_and_calmar_match_quantstats_which_also_counts_years_in_sessions(random_path):
    daily, returns = random_path

    m = performance_metrics(daily, NO_TRADES, 100_000.0)

    # quantstats (0.0.86 here): years = return count / periods; older releases used calendar days / 365
    assert m["cagr_pct"] == pytest.approx(qs.cagr(returns, periods=252) * 100, rel=1e-9)
    assert m["calmar"] == pytest.approx(qs.calmar(returns, periods=252), rel=1e-9)
    # and the formula itself, in case quantstats changes its mind: 250 sessions are 250 / 252 years
    growth = daily["equity"].iloc[-1] / 100_000.0
    assert m["cagr_pct"] == pytest.approx((growth ** (252 / 250) - 1) * 100, rel=1e-12)


# --- many backtests at once (sweeps) ---------------------------------------------------------------


def test_grid_metrics_equal_performance_metrics_row_by_row():
    from openbell.core.metrics import GRID_METRICS, grid_metrics

    rng = np.random.default_rng(7)
    daily_pnl = rng.normal(-20, 400, size=(30, 12)).round(2)
    daily_pnl[3] = 0.0  # flat: NaN Sharpe
    daily_pnl[4] = np.abs(daily_pnl[4])  # never below its peak: NaN Calmar
    trade_pnl = rng.normal(-5, 150, size=(30, 40)).round(2)
    trade_pnl[5] = np.abs(trade_pnl[5]) + 1  # no loss: infinite profit factor
    dates = pd.bdate_range("2025-03-03", periods=12).date

    got = grid_metrics(daily_pnl, trade_pnl, 50_000.0)

    for row in range(30):
        daily = pd.DataFrame(
            {"trade_date": dates, "equity": 50_000 + daily_pnl[row].cumsum(), "pnl": daily_pnl[row], "exposure": 0.0}
        )
        trades = pd.DataFrame({"pnl": trade_pnl[row], "exit_reason": "stop"})
        expected = performance_metrics(daily, trades, 50_000.0)
        for key in GRID_METRICS:
            assert got[key][row] == pytest.approx(expected[key], rel=1e-12, nan_ok=True), (row, key)


def test_grid_metrics_of_one_session_leave_the_spreads_undefined():
    from openbell.core.metrics import grid_metrics

    got = grid_metrics(np.array([[100.0], [-50.0]]), np.array([[100.0], [-50.0]]), 10_000.0)

    assert got["total_return_pct"].tolist() == pytest.approx([1.0, -0.5])
    assert np.isnan(got["sharpe"]).all() and np.isnan(got["volatility_ann_pct"]).all()
    assert got["max_drawdown_pct"].tolist() == pytest.approx([0.0, -0.5])
