"""A day traded live against the same day replayed: trade by trade, and the verdict of the original plan.

The plan's test of a replay is that it reproduces what live trading did within 5%: here, that the two
days' net P&L differ by at most `tolerance_pct` percent of the replayed day's net P&L (its absolute
value). Each symbol traded on either side is one row: shares, entry and exit prices, exit reasons,
commissions and P&L of both, and the P&L difference, so the cause of a miss is on the row that has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pandas as pd

TRADE_COLUMNS = ("symbol", "shares", "entry_price", "exit_price", "exit_reason", "commission", "pnl")


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The comparison of one day; `rows` has one row per symbol traded live or in the replay."""

    rows: pd.DataFrame  # symbol, then each TRADE_COLUMNS field as <field>_live and <field>_replayed, pnl_diff
    live_pnl: Decimal
    replayed_pnl: Decimal
    tolerance_pct: Decimal

    @property
    def difference(self) -> Decimal:
        return self.live_pnl - self.replayed_pnl

    @property
    def difference_pct(self) -> Decimal | None:
        """The difference in percent of the replayed net P&L; None when that is zero."""
        return abs(self.difference) / abs(self.replayed_pnl) * 100 if self.replayed_pnl else None

    @property
    def within(self) -> bool:
        if self.difference_pct is None:
            return self.difference == 0
        return self.difference_pct <= self.tolerance_pct

    @property
    def only_live(self) -> list[str]:
        return sorted(self.rows.loc[self.rows["shares_replayed"].isna(), "symbol"])

    @property
    def only_replayed(self) -> list[str]:
        return sorted(self.rows.loc[self.rows["shares_live"].isna(), "symbol"])

    def verdict(self) -> str:
        pct = "n/a" if self.difference_pct is None else f"{self.difference_pct:.1f}%"
        word = "within" if self.within else "NOT within"
        return (
            f"net P&L live ${self.live_pnl:,.2f}, replayed ${self.replayed_pnl:,.2f}: difference ${self.difference:,.2f} "
            f"({pct} of the replayed P&L), {word} {self.tolerance_pct}%"
        )


def reconcile_trades(live: pd.DataFrame, replayed: pd.DataFrame, tolerance_pct: Decimal = Decimal(5)) -> Reconciliation:
    """Compare one day's trades (TRADE_COLUMNS, P&L and prices exact Decimals) traded live and replayed."""
    rows = pd.merge(
        live.loc[:, list(TRADE_COLUMNS)],
        replayed.loc[:, list(TRADE_COLUMNS)],
        on="symbol",
        how="outer",
        suffixes=("_live", "_replayed"),
        sort=True,
    )
    zero = Decimal(0)
    rows["pnl_diff"] = [
        (a if isinstance(a, Decimal) else zero) - (b if isinstance(b, Decimal) else zero)
        for a, b in zip(rows["pnl_live"], rows["pnl_replayed"], strict=True)
    ]
    live_pnl = sum((p for p in live["pnl"] if isinstance(p, Decimal)), zero)
    replayed_pnl = sum((p for p in replayed["pnl"] if isinstance(p, Decimal)), zero)
    return Reconciliation(rows.reset_index(drop=True), live_pnl, replayed_pnl, tolerance_pct)
