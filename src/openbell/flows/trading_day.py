"""A whole trading day: scan, rank, MOO orders, exit monitor, liquidation and report, in order."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from openbell.config import RunOptions
from openbell.flows._params import DryRun, Mode, Options, Symbols, TradeDate
from openbell.flows.liquidate_eod import liquidate_eod
from openbell.flows.monitor_exits import monitor_exits
from openbell.flows.place_moo_orders import place_moo_orders
from openbell.flows.premarket_scan import premarket_scan
from openbell.flows.rank_candidates import rank_candidates
from openbell.flows.report_eod import report_eod
from openbell.tasks.runs import commit_replayed_day, discard_staged_day, stage_replayed_day

REPLACE_HELP = (
    "Replay only: replace this date's earlier replay in the database once this one is complete (a live day is "
    "never touched)."
)


@flow(name="trading-day", log_prints=True)
def trading_day(
    trade_date: TradeDate = None,
    mode: Mode = "replay",
    symbols: Symbols = None,
    replace_existing: Annotated[bool, Field(description=REPLACE_HELP)] = True,
    options: Options = None,
    dry_run: DryRun = False,
) -> str:
    """Run every phase of one trading day; returns the end-of-day report."""
    options = options or RunOptions()
    day, staged = stage_replayed_day(trade_date, mode, options, replace_existing)
    run = staged or options  # a replay of a day already replayed is built apart and swapped in at the end
    try:
        if not symbols:  # fixed symbols replace the scan and the ranking
            premarket_scan(day, mode, run)
        rank_candidates(day, mode, symbols, run)
        place_moo_orders(day, mode, run, dry_run)
        monitor_exits(day, mode, run, dry_run)
        liquidate_eod(day, mode, run, dry_run)
        report = report_eod(day, mode, run)
        if staged is not None:
            commit_replayed_day(day, staged, options)
    except BaseException:
        if staged is not None:  # the earlier replay stays as it was
            discard_staged_day(staged)
        raise
    return report
