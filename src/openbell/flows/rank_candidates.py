"""Ranking: order the scan's candidates (or take fixed symbols) and select the day's picks."""

from __future__ import annotations

from prefect import flow

from openbell.config import RunOptions
from openbell.flows._params import Mode, Options, Symbols, TradeDate
from openbell.tasks.rank import rank
from openbell.tasks.runs import begin_run, finish_run


@flow(name="rank-candidates", log_prints=True)
def rank_candidates(
    trade_date: TradeDate = None,
    mode: Mode = "replay",
    symbols: Symbols = None,
    options: Options = None,
) -> list[str]:
    """Rank the candidates into `rankings`; returns the selected symbols, best first."""
    run = begin_run("rank_candidates", trade_date, mode, options or RunOptions())
    if run.closed:
        return []
    selected = rank(run, symbols)
    finish_run(run, f"selected {', '.join(selected) or 'nothing'}")
    return selected
