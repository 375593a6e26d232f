"""The end-of-day report as text: the day's P&L and its trades, one line each."""

from __future__ import annotations

from openbell.core.pnl import DailyPnl
from openbell.core.types import Trade

_ROW = "{:<7} {:>6} {:>5} {:>10} {:>5} {:>10} {:<6} {:>10} {:>7}"


def render_report(summary: DailyPnl, trades: list[Trade]) -> str:
    lines = [
        f"openbell report for {summary.trade_date}",
        f"trades {summary.trades}   wins {summary.wins}   losses {summary.losses}   win rate {summary.win_rate:.0%}",
        f"gross P&L ${summary.gross_pnl:,.2f}   commissions ${summary.commission:,.2f}   net P&L ${summary.net_pnl:,.2f}",
        f"unfilled entries {summary.unfilled}   skipped by sizing {summary.skipped}",
    ]
    if trades:
        lines += ["", _ROW.format("symbol", "shares", "in", "entry", "out", "exit", "reason", "P&L", "return")]
        lines += [
            _ROW.format(
                t.symbol,
                t.shares,
                f"{t.entry_ts:%H:%M}",
                f"{t.entry_price:,.2f}",
                f"{t.exit_ts:%H:%M}",
                f"{t.exit_price:,.2f}",
                t.exit_reason.value,
                f"{t.pnl:,.2f}",
                f"{t.return_pct:+.2f}%",
            )
            for t in trades
        ]
    return "\n".join(lines)


def render_markdown(summary: DailyPnl, trades: list[Trade]) -> str:
    """The same report as markdown, for the Prefect UI."""
    lines = [
        f"# openbell report for {summary.trade_date}",
        "",
        "| trades | wins | losses | win rate | gross P&L | commissions | net P&L | unfilled | skipped |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {summary.trades} | {summary.wins} | {summary.losses} | {summary.win_rate:.0%} | ${summary.gross_pnl:,.2f} "
        f"| ${summary.commission:,.2f} | ${summary.net_pnl:,.2f} | {summary.unfilled} | {summary.skipped} |",
    ]
    if trades:
        lines += [
            "",
            "| symbol | shares | entry | price | exit | price | reason | P&L | return |",
            "|---|---:|---|---:|---|---:|---|---:|---:|",
        ]
        lines += [
            f"| {t.symbol} | {t.shares} | {t.entry_ts:%H:%M} | {t.entry_price:,.2f} | {t.exit_ts:%H:%M} "
            f"| {t.exit_price:,.2f} | {t.exit_reason.value} | {t.pnl:,.2f} | {t.return_pct:+.2f}% |"
            for t in trades
        ]
    return "\n".join(lines)
