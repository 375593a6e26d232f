"""Pre-market scan: gap, ATR, volume features and filters for the universe."""

from __future__ import annotations

from prefect import flow

from openbell.config import RunOptions
from openbell.flows._params import Mode, Options, TradeDate
from openbell.tasks.runs import begin_run, finish_run
from openbell.tasks.scan import scan_candidates


@flow(name="premarket-scan", log_prints=True)
def premarket_scan(
    trade_date: TradeDate = None,
    mode: Mode = "replay",
    options: Options = None,
) -> int:
    """Scan the universe for gappers; writes `candidates` and returns how many passed."""
    run = begin_run("premarket_scan", trade_date, mode, options or RunOptions())
    if run.closed:
        return 0
    passed = scan_candidates(run)
    finish_run(run, f"{passed} candidates")
    return passed
