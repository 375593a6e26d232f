"""End-of-day report: trades and P&L into the store, the report printed, then the store's housekeeping."""

from __future__ import annotations

from prefect import flow

from openbell.config import RunOptions
from openbell.flows._params import Mode, Options, TradeDate
from openbell.tasks.report import build_report, housekeep_store
from openbell.tasks.runs import begin_run, finish_run


@flow(name="report-eod", log_prints=True)
def report_eod(
    trade_date: TradeDate = None,
    mode: Mode = "replay",
    options: Options = None,
) -> str:
    """Compute the day's round trips and P&L; returns the report text."""
    run = begin_run("report_eod", trade_date, mode, options or RunOptions())
    if run.closed:
        return ""
    text = build_report(run)
    finish_run(run, text.splitlines()[2] if text else "")
    if text:
        housekeep_store(run)
    return text
