"""Position sizing: how many whole shares a pick gets, within the caps."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, Decimal


@dataclass(frozen=True, slots=True)
class SizingPolicy:
    """A fixed dollar allocation, or a percentage of equity, capped by shares and notional."""

    allocation: Decimal = Decimal(10_000)  # dollars per position, used when pct_of_equity is None
    pct_of_equity: Decimal | None = None  # e.g. 5 for 5% of account equity per position
    max_shares: int | None = None
    max_notional: Decimal | None = None

    def __post_init__(self) -> None:
        if self.allocation <= 0:
            raise ValueError(f"allocation must be positive dollars, got {self.allocation}")
        if self.pct_of_equity is not None and not Decimal(0) < self.pct_of_equity <= Decimal(100):
            raise ValueError(f"pct_of_equity must be in (0, 100], got {self.pct_of_equity}")
        if self.max_shares is not None and self.max_shares < 1:
            raise ValueError(f"max_shares must be at least 1, got {self.max_shares}")
        if self.max_notional is not None and self.max_notional <= 0:
            raise ValueError(f"max_notional must be positive dollars, got {self.max_notional}")


def scaled(policy: SizingPolicy, factor: Decimal) -> SizingPolicy:
    """The policy with its budget (allocation, or percent of equity) times `factor`: a throttled ranker's size."""
    if factor == 1:
        return policy
    pct = policy.pct_of_equity * factor if policy.pct_of_equity is not None else None
    return replace(policy, allocation=policy.allocation * factor, pct_of_equity=pct)


@dataclass(frozen=True, slots=True)
class PositionSize:
    symbol: str
    ref_price: Decimal
    shares: int  # 0 when skipped
    notional: Decimal
    skipped_reason: str | None = None


def size_position(symbol: str, ref_price: Decimal, equity: Decimal, policy: SizingPolicy) -> PositionSize:
    """Whole shares of `symbol` at `ref_price` (the indicative open) under `policy`.

    The budget is the allocation (or pct_of_equity of `equity`), capped by max_notional; shares
    are rounded down and capped by max_shares. Below one share the pick is skipped, with the reason.
    """
    if ref_price <= 0:
        return PositionSize(symbol, ref_price, 0, Decimal(0), f"reference price {ref_price} is not positive")
    budget = equity * policy.pct_of_equity / 100 if policy.pct_of_equity is not None else policy.allocation
    if policy.max_notional is not None:
        budget = min(budget, policy.max_notional)
    shares = int((budget / ref_price).to_integral_value(rounding=ROUND_FLOOR))
    if policy.max_shares is not None:
        shares = min(shares, policy.max_shares)
    if shares < 1:
        reason = f"${budget:,.2f} buys less than one share at ${ref_price}"
        return PositionSize(symbol, ref_price, 0, Decimal(0), reason)
    return PositionSize(symbol, ref_price, shares, shares * ref_price)


def within_buying_power(sizes: list[PositionSize], buying_power: Decimal) -> list[PositionSize]:
    """The sizes in rank order, each kept while the notional so far fits in `buying_power`; later ones skipped.

    A broker refuses an order it cannot pay for: the backtest, and the orders sent on a trading day,
    skip it instead, with the reason, and keep any later pick that still fits.
    """
    left, out = buying_power, []
    for size in sizes:
        if size.shares and size.notional > left:
            reason = f"needs ${size.notional:,.2f}, ${max(left, Decimal(0)):,.2f} of buying power left"
            out.append(PositionSize(size.symbol, size.ref_price, 0, Decimal(0), reason))
            continue
        left -= size.notional
        out.append(size)
    return out
