"""Intraday exit monitor: protective exits for filled entries, watched until liquidation time."""

from __future__ import annotations

from prefect import flow

from openbell.config import RunOptions
from openbell.flows._params import DryRun, Mode, Options, TradeDate
from openbell.tasks.intraday import watch_positions
from openbell.tasks.runs import begin_run, finish_run


@flow(name="monitor-exits", log_prints=True)
def monitor_exits(
    trade_date: TradeDate = None,
    mode: Mode = "replay",
    options: Options = None,
    dry_run: DryRun = False,
) -> int:
    """Watch the day's positions from the open to the liquidation time; returns exits filled."""
    run = begin_run("monitor_exits", trade_date, mode, options or RunOptions(), dry_run)
    if run.closed:
        return 0
    exits = watch_positions(run)
    finish_run(run, f"{exits} exits filled")
    return exits
