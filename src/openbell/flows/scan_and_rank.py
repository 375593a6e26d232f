"""The morning's first phase: scan the universe, then rank the candidates into the day's picks."""

from __future__ import annotations

from prefect import flow

from openbell.flows._params import Mode, Options, Symbols, TradeDate
from openbell.flows.premarket_scan import premarket_scan
from openbell.flows.rank_candidates import rank_candidates


@flow(name="scan-and-rank", log_prints=True)
def scan_and_rank(
    trade_date: TradeDate = None,
    mode: Mode = "replay",
    symbols: Symbols = None,
    options: Options = None,
) -> list[str]:
    """Scan for gappers and rank them; returns the selected symbols, best first."""
    if not symbols:  # fixed symbols replace the scan and the ranking
        premarket_scan(trade_date, mode, options)
    return rank_candidates(trade_date, mode, symbols, options)
