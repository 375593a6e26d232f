"""The end-of-day report as text: the day's P&L, its trades one line each, and how well the rankers ranked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from openbell.core.pnl import DailyPnl
from openbell.core.types import Trade

BASELINE = "gap_x_rvol"


@dataclass(frozen=True, slots=True)
class RankerQuality:
    """One ranker's Spearman correlation with the candidates' realised returns (NaN: too few to say)."""

    ranker: str
    n: int
    open_close: float
    open_high: float


@dataclass(frozen=True, slots=True)
class RankingReview:
    """Which ranker chose the day's trades, why it was not the one asked for, and how each ranker did."""

    ranker: str
    requested: str
    fallback_reason: str | None
    quality: tuple[RankerQuality, ...]

    def ordered(self) -> list[RankerQuality]:
        """The quant baseline first, then the ranker that traded, then the others by name."""
        first = {BASELINE: 0, self.ranker: 1}
        return sorted(self.quality, key=lambda q: (first.get(q.ranker, 2), q.ranker))


def _rho(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.2f}"


def _decision(review: RankingReview) -> str:
    line = f"ranked by {review.ranker}"
    if review.fallback_reason:
        line += f" instead of {review.requested}: {review.fallback_reason}"
    return line


def _quality_lines(review: RankingReview) -> list[str]:
    row = "{:<16} {:>10} {:>10} {:>4}"
    lines = ["", _decision(review)]
    if review.quality:
        lines += ["ranking quality: Spearman rank correlation of scores with realised returns"]
        lines += [row.format("ranker", "open→close", "open→high", "n")]
        lines += [
            row.format(q.ranker + (" *" if q.ranker == review.ranker else ""), _rho(q.open_close), _rho(q.open_high), q.n)
            for q in review.ordered()
        ]
    return lines


def _quality_markdown(review: RankingReview) -> list[str]:
    lines = ["", f"**{_decision(review)}**"]
    if review.quality:
        lines += [
            "",
            "Ranking quality: Spearman rank correlation of each ranker's scores with the candidates' realised returns"
            " (* traded; n/a: fewer than 3 candidates or no spread).",
            "",
            "| ranker | open→close | open→high | n |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {q.ranker}{' *' if q.ranker == review.ranker else ''} | {_rho(q.open_close)} | {_rho(q.open_high)} | {q.n} |"
            for q in review.ordered()
        ]
    return lines


_ROW = "{:<7} {:>6} {:>5} {:>10} {:>5} {:>10} {:<6} {:>10} {:>7}"


def render_report(
    summary: DailyPnl, trades: list[Trade], review: RankingReview | None = None, risk: Sequence[str] = ()
) -> str:
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
    if review is not None:
        lines += _quality_lines(review)
    if risk:
        lines += ["", "risk guards and the learning loop:", *(f"  {line}" for line in risk)]
    return "\n".join(lines)


def render_markdown(
    summary: DailyPnl, trades: list[Trade], review: RankingReview | None = None, risk: Sequence[str] = ()
) -> str:
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
    if review is not None:
        lines += _quality_markdown(review)
    if risk:
        lines += ["", "## Risk guards and the learning loop", "", *(f"- {line}" for line in risk)]
    return "\n".join(lines)
