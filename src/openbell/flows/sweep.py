"""Research: every target x stop x liquidation time over the same sessions of a range, with an out-of-sample check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from prefect import flow
from pydantic import Field

from openbell.config import RunOptions, default_of
from openbell.flows._params import Options, Symbols
from openbell.flows.backtest import End, ReportPath, Start
from openbell.research import jobs
from openbell.research.backtest import BacktestSpec
from openbell.research.sweep import SweepSpec, parse_grid, parse_times
from openbell.tasks.artifacts import publish_markdown
from openbell.tasks.research import plan_on_task_runner, progress_artifact

TargetGrid = Annotated[str, Field(description="Targets, percent: FROM:TO:STEP such as 1:4:0.25, or a list such as 2,2.6,3.")]
StopGrid = Annotated[str, Field(description="Stops, percent: FROM:TO:STEP such as 0.5:2:0.25, or a list.")]
Liquidations = Annotated[str, Field(description="Liquidation times, New York, such as 15:45,15:00.")]
Metric = Annotated[str, Field(description="The metric that ranks the combinations (sharpe, total_return_pct, ...).")]
InSample = Annotated[float, Field(gt=0, lt=1, description="The share of the sessions the best combination is chosen on.")]


@flow(name="sweep", log_prints=True)
def sweep(
    start: Start,
    end: End,
    target_pct: TargetGrid = "1:4:0.25",
    stop_pct: StopGrid = "0.5:2:0.25",
    liquidation: Liquidations = default_of("OPENBELL_EXITS__LIQUIDATION_TIME"),
    metric: Metric = "sharpe",
    in_sample: InSample = 0.5,
    symbols: Symbols = None,
    options: Options = None,
    report_path: ReportPath = None,
) -> dict:
    """Sweep the exit grid over the range; returns the run id, the report's path and the overfitting check."""
    options = options or RunOptions()
    backtest = BacktestSpec(options.settings(), start, end, tuple(symbols) if symbols else None)
    spec = SweepSpec(
        backtest, parse_grid(target_pct, "target_pct"), parse_grid(stop_pct, "stop_pct"), parse_times(liquidation),
        metric=metric, in_sample=in_sample,
    )  # fmt: skip
    progress = progress_artifact(f"Sweep {start} to {end}")
    report_to = Path(report_path) if report_path else None
    swept = jobs.sweep(spec, report_to=report_to, planner=plan_on_task_runner, progress=progress)
    publish_markdown("sweep", jobs.sweep_markdown(swept), f"Sweep {start} to {end}")
    return {"run_id": swept.outcome.run_id, "report": str(swept.report), "notes": list(swept.outcome.notes)}
