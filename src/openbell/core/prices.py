"""Exact prices: tick rounding, exit levels, slippage and commissions.

Prices are booked as Decimal. The replay engine works on integer price units of $0.0001
(`UNITS`), which keeps every comparison against a tick-rounded level exact and fast.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from openbell.core.types import Side

UNITS = 10_000  # integer price units per dollar: $0.0001, the finest US equity tick
_ONE_DOLLAR = Decimal(1)
_CENT = Decimal("0.01")
_SUBPENNY = Decimal("0.0001")


def tick_size(price: Decimal) -> Decimal:
    """US equities: $0.01 at or above $1, $0.0001 below."""
    return _CENT if price >= _ONE_DOLLAR else _SUBPENNY


def round_to_tick(price: Decimal) -> Decimal:
    """Round to the nearest tick (half up). The tick is chosen from the unrounded price."""
    return price.quantize(tick_size(price), rounding=ROUND_HALF_UP)


def as_price(value: float | int | str | Decimal) -> Decimal:
    """A market-data float as an exact tick-rounded Decimal (goes through its shortest repr)."""
    return round_to_tick(value if isinstance(value, Decimal) else Decimal(repr(float(value))))


def exit_levels(entry: Decimal, target_pct: Decimal, stop_pct: Decimal) -> tuple[Decimal, Decimal]:
    """Profit target and stop for a long entry, each rounded to the tick.

    `target_pct` and `stop_pct` are positive percentages: 2.6 and 0.9 give +2.6% / -0.9%.
    """
    target = round_to_tick(entry * (1 + target_pct / 100))
    stop = round_to_tick(entry * (1 - stop_pct / 100))
    return target, stop


def with_slippage(price: Decimal, side: Side, slippage_bps: Decimal) -> Decimal:
    """The price a market order gets after slippage: worse by `slippage_bps`, tick-rounded."""
    if not slippage_bps:
        return round_to_tick(price)
    factor = slippage_bps / Decimal(10_000)
    adjusted = price * (1 + factor) if side is Side.BUY else price * (1 - factor)
    return round_to_tick(adjusted)


COMMISSION_PER_SHARE = Decimal("0.005")  # the default commission model (IB's fixed pricing)
COMMISSION_MINIMUM = Decimal("1.00")


def commission(shares: int, per_share: Decimal = COMMISSION_PER_SHARE, minimum: Decimal = COMMISSION_MINIMUM) -> Decimal:
    """Per-order commission: max(minimum, per_share x shares)."""
    return max(minimum, per_share * shares)


def to_units(prices: np.ndarray) -> np.ndarray:
    """Float dollar prices as int64 units of $0.0001 (rounded to the nearest unit)."""
    scaled = np.multiply(np.asarray(prices, dtype=np.float64), UNITS)  # one temporary, rounded in place
    return np.rint(scaled, out=scaled).astype(np.int64)


def units_to_price(units: int) -> Decimal:
    return Decimal(int(units)).scaleb(-4)


def price_to_units(price: Decimal) -> int:
    return int((price * UNITS).to_integral_value(rounding=ROUND_HALF_UP))


def scaled_to_tick(units: np.ndarray, factor: Decimal) -> np.ndarray:
    """`round_to_tick(price x factor)` for many prices at once, in exact integer arithmetic.

    `units` are prices in $0.0001 units; the result is too. Agrees with the Decimal path
    (`round_to_tick`) to the unit: the tick comes from the unrounded product and halves round up.
    """
    num, den = factor.as_integer_ratio()
    raw = np.asarray(units, dtype=np.int64) * num  # the product, times `den`
    if raw.size and (np.abs(raw).max() > 2**62 // 200 or den > 2**20):
        raise OverflowError(f"factor {factor} is too fine for the integer path; use round_to_tick")
    return _ratio_to_tick(raw, den)


def shifted_to_tick(units: np.ndarray, offset_units: np.ndarray) -> np.ndarray:
    """`round_to_tick(price + offset)` for many prices at once (both in $0.0001 units; the offset may be negative)."""
    return _ratio_to_tick(np.asarray(units, dtype=np.int64) + np.asarray(offset_units, dtype=np.int64), 1)


def _ratio_to_tick(raw: np.ndarray, den: int) -> np.ndarray:
    """`raw / den` units rounded to the tick, halves up; the tick comes from the unrounded price."""
    cents = (raw + 50 * den) // (100 * den) * 100
    subpenny = (2 * raw + den) // (2 * den)
    return np.where(raw >= UNITS * den, cents, subpenny)
