"""Research: backtest a date range of the replay data through the trading day's decisions, on one account."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

from prefect import flow
from pydantic import Field

from openbell.config import RunOptions
from openbell.flows._params import Options, Symbols
from openbell.research import jobs
from openbell.research.backtest import BacktestSpec
from openbell.tasks.artifacts import publish_markdown
from openbell.tasks.research import plan_on_task_runner, progress_artifact

Start = Annotated[date, Field(description="The first session of the range (New York).")]
End = Annotated[date, Field(description="The last session of the range (New York).")]
FreshLlm = Annotated[bool, Field(description="Ask the LLM; otherwise only its replies recorded in DuckDB are used.")]
ReportPath = Annotated[str | None, Field(description="The HTML report to write. Empty: data/reports/<run id>.html.")]


@flow(name="backtest", log_prints=True)
def backtest(
    start: Start,
    end: End,
    symbols: Symbols = None,
    options: Options = None,
    fresh_llm: FreshLlm = False,
    report_path: ReportPath = None,
) -> dict:
    """Backtest the range; returns the run id, the report's path and the metrics."""
    options = options or RunOptions()
    spec = BacktestSpec(options.settings(), start, end, tuple(symbols) if symbols else None, fresh_llm=fresh_llm)
    progress = progress_artifact(f"Backtest {start} to {end}")
    report_to = Path(report_path) if report_path else None
    finished = jobs.backtest(spec, report_to=report_to, planner=plan_on_task_runner, progress=progress)
    publish_markdown("backtest", jobs.summary_markdown(finished), f"Backtest {start} to {end}")
    return {"run_id": finished.result.run_id, "report": str(finished.report), "metrics": finished.result.metrics}
