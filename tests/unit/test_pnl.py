"""P&L: round trips from fills, and the day's summary."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from openbell.core.pnl import round_trips, summarize_day
from openbell.core.types import ExitReason, Fill, Purpose, Side, Symbol, Trade, client_order_id

D = Decimal
DAY = date(2025, 3, 3)
NY = ZoneInfo("America/New_York")


def at(hhmm: str) -> datetime:
    hours, minutes = hhmm.split(":")
    return datetime(2025, 3, 3, int(hours), int(minutes), tzinfo=NY)


def fill(symbol: str, purpose: Purpose, side: Side, qty: int, price: str, commission: str, hhmm: str, n: int = 1) -> Fill:
    order_id = client_order_id(DAY, symbol, purpose)
    return Fill(f"{order_id}-{n}", order_id, Symbol(symbol), side, qty, D(price), D(commission), at(hhmm))


def purposes_of(fills: list[Fill]) -> dict:
    return {f.client_order_id: Purpose(f.client_order_id.rsplit("-", 1)[1]) for f in fills}


def trades_of(fills: list[Fill]) -> list[Trade]:
    return round_trips(DAY, fills, purposes_of(fills))


def test_client_order_id_is_deterministic_per_date_symbol_and_purpose():
    assert client_order_id(DAY, "AAPL", Purpose.ENTRY) == "ob-20250303-AAPL-entry"


def test_entry_and_exit_fill_make_one_trade():
    fills = [
        fill("AAPL", Purpose.ENTRY, Side.BUY, 100, "10.00", "1.00", "09:30"),
        fill("AAPL", Purpose.TARGET, Side.SELL, 100, "10.26", "1.00", "10:15"),
    ]

    [trade] = trades_of(fills)

    assert (trade.symbol, trade.shares, trade.entry_price, trade.exit_price) == ("AAPL", 100, D("10.00"), D("10.26"))
    assert (trade.entry_ts, trade.exit_ts, trade.trade_date) == (at("09:30"), at("10:15"), DAY)


def test_pnl_is_sells_minus_buys_minus_commissions_exactly():
    fills = [
        fill("AAPL", Purpose.ENTRY, Side.BUY, 2001, "10.00", "10.005", "09:30"),
        fill("AAPL", Purpose.STOP, Side.SELL, 2001, "9.91", "10.005", "09:41"),
    ]

    [trade] = trades_of(fills)

    assert (trade.commission, trade.pnl) == (D("20.010"), D("-200.10"))  # -0.09 x 2001 - 20.01


def test_partial_fills_are_volume_weighted_and_booked_exactly():
    fills = [
        fill("AAPL", Purpose.ENTRY, Side.BUY, 60, "10.00", "1.00", "09:30", n=1),
        fill("AAPL", Purpose.ENTRY, Side.BUY, 40, "10.05", "0.00", "09:30", n=2),
        fill("AAPL", Purpose.EOD, Side.SELL, 70, "10.20", "1.00", "15:45", n=1),
        fill("AAPL", Purpose.EOD, Side.SELL, 30, "10.30", "0.00", "15:46", n=2),
    ]

    [trade] = trades_of(fills)

    # buys 600.00 + 402.00 = 1002.00; sells 714.00 + 309.00 = 1023.00
    assert (trade.entry_price, trade.exit_price) == (D("10.02"), D("10.23"))
    assert trade.pnl == D("19.00")  # 1023.00 - 1002.00 - 2.00
    assert trade.exit_ts == at("15:46")


@pytest.mark.parametrize(
    ("purpose", "reason"),
    [(Purpose.TARGET, ExitReason.TARGET), (Purpose.STOP, ExitReason.STOP), (Purpose.EOD, ExitReason.EOD)],
)
def test_exit_reason_comes_from_the_exit_orders_purpose(purpose, reason):
    fills = [
        fill("AAPL", Purpose.ENTRY, Side.BUY, 100, "10.00", "1.00", "09:30"),
        fill("AAPL", purpose, Side.SELL, 100, "10.10", "1.00", "11:00"),
    ]

    [trade] = trades_of(fills)

    assert trade.exit_reason is reason


def test_fills_are_paired_per_symbol_and_trades_sorted_by_symbol():
    fills = [
        fill("MSFT", Purpose.ENTRY, Side.BUY, 10, "400.00", "1.00", "09:30"),
        fill("AAPL", Purpose.ENTRY, Side.BUY, 100, "10.00", "1.00", "09:30"),
        fill("MSFT", Purpose.STOP, Side.SELL, 10, "396.40", "1.00", "09:50"),
        fill("AAPL", Purpose.TARGET, Side.SELL, 100, "10.26", "1.00", "10:15"),
    ]

    trades = trades_of(fills)

    assert [(t.symbol, t.pnl, t.exit_reason) for t in trades] == [
        ("AAPL", D("24.00"), ExitReason.TARGET),
        ("MSFT", D("-38.00"), ExitReason.STOP),
    ]


def test_open_position_produces_no_trade():
    fills = [
        fill("AAPL", Purpose.ENTRY, Side.BUY, 100, "10.00", "1.00", "09:30"),
        fill("AAPL", Purpose.TARGET, Side.SELL, 40, "10.26", "1.00", "10:15"),
    ]

    assert trades_of(fills) == []


def test_entry_without_exit_produces_no_trade():
    fills = [fill("AAPL", Purpose.ENTRY, Side.BUY, 100, "10.00", "1.00", "09:30")]

    assert trades_of(fills) == []


def test_no_fills_produce_no_trades():
    assert round_trips(DAY, [], {}) == []


def test_open_position_does_not_hide_a_closed_one():
    fills = [
        fill("AAPL", Purpose.ENTRY, Side.BUY, 100, "10.00", "1.00", "09:30"),
        fill("MSFT", Purpose.ENTRY, Side.BUY, 10, "400.00", "1.00", "09:30"),
        fill("MSFT", Purpose.EOD, Side.SELL, 10, "401.00", "1.00", "15:45"),
    ]

    assert [t.symbol for t in trades_of(fills)] == ["MSFT"]


def _trade(symbol: str, pnl: str, commission: str = "2.00") -> Trade:
    return Trade(DAY, Symbol(symbol), 100, at("09:30"), D("10"), at("15:45"), D("10"), ExitReason.EOD, D(commission), D(pnl))


def test_summarize_day_counts_wins_losses_and_win_rate():
    trades = [_trade("A", "48.00"), _trade("B", "-92.00"), _trade("C", "10.00"), _trade("D", "0")]

    day = summarize_day(DAY, trades)

    assert (day.trades, day.wins, day.losses, day.win_rate) == (4, 2, 1, 0.5)


def test_summarize_day_adds_commission_back_for_gross_pnl():
    trades = [_trade("A", "48.00", "2.00"), _trade("B", "-92.00", "20.01")]

    day = summarize_day(DAY, trades)

    assert (day.net_pnl, day.commission, day.gross_pnl) == (D("-44.00"), D("22.01"), D("-21.99"))


def test_summarize_day_passes_through_unfilled_and_skipped_counts():
    day = summarize_day(DAY, [_trade("A", "1.00")], unfilled=2, skipped=3)

    assert (day.trade_date, day.unfilled, day.skipped) == (DAY, 2, 3)


def test_summarize_day_without_trades_has_zero_win_rate_and_zero_pnl():
    day = summarize_day(DAY, [])

    assert (day.trades, day.wins, day.losses, day.win_rate, day.net_pnl, day.gross_pnl) == (0, 0, 0, 0.0, 0, 0)
