"""Flatten now: cancel the system's open orders and sell what it opened, from the UI's Run button or `openbell flatten`."""

from __future__ import annotations

from datetime import time
from typing import Annotated

from prefect import flow
from pydantic import Field

from openbell.config import RunOptions
from openbell.flows._params import DryRun, Mode, Options, TradeDate
from openbell.tasks.intraday import flatten_now as sell_everything_we_opened
from openbell.tasks.runs import begin_run, finish_run

At = Annotated[time | None, Field(description="A replay only: the time of day (New York) to flatten at.")]


@flow(name="flatten-now", log_prints=True)
def flatten_now(
    trade_date: TradeDate = None,
    mode: Mode = "live",
    options: Options = None,
    dry_run: DryRun = False,
    at: At = None,
) -> int:
    """Cancel the system's open orders and sell at market what it opened, now; holdings it did not open stay.

    No new order is sent for the rest of the day. Returns the number of positions sold.
    """
    run = begin_run("flatten_now", trade_date, mode, options or RunOptions(), dry_run)
    if run.closed:
        return 0
    sold = sell_everything_we_opened(run, at)
    finish_run(run, f"{sold} positions flattened{' (dry run)' if dry_run else ''}")
    return sold
