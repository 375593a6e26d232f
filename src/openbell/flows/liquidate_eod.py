"""End-of-day liquidation: flatten what the system opened and cancel its open orders."""

from __future__ import annotations

from prefect import flow

from openbell.config import RunOptions
from openbell.flows._params import DryRun, Mode, Options, TradeDate
from openbell.tasks.intraday import flatten_positions
from openbell.tasks.runs import begin_run, finish_run


@flow(name="liquidate-eod", log_prints=True)
def liquidate_eod(
    trade_date: TradeDate = None,
    mode: Mode = "replay",
    options: Options = None,
    dry_run: DryRun = False,
) -> int:
    """Flatten the system's positions at the liquidation time; returns positions flattened."""
    run = begin_run("liquidate_eod", trade_date, mode, options or RunOptions(), dry_run)
    if run.closed:
        return 0
    flattened = flatten_positions(run)
    finish_run(run, f"{flattened} positions flattened")
    return flattened
