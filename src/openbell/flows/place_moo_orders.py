"""Market-on-open orders: size the picks and submit them before the cutoff."""

from __future__ import annotations

from prefect import flow

from openbell.config import RunOptions
from openbell.flows._params import DryRun, Mode, Options, TradeDate
from openbell.tasks.orders import submit_moo_orders
from openbell.tasks.runs import begin_run, finish_run


@flow(name="place-moo-orders", log_prints=True)
def place_moo_orders(
    trade_date: TradeDate = None,
    mode: Mode = "replay",
    options: Options = None,
    dry_run: DryRun = False,
) -> int:
    """Submit market-on-open entries for the selected picks; returns how many were accepted."""
    run = begin_run("place_moo_orders", trade_date, mode, options or RunOptions(), dry_run)
    if run.closed:
        return 0
    sent = submit_moo_orders(run)
    finish_run(run, f"{sent} market-on-open orders")
    return sent
