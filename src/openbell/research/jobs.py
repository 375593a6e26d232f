"""Whole research jobs, from the replay files to DuckDB and the HTML report: what the CLI and the Prefect flows both call."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from openbell import calendar, wiring
from openbell.core.metrics import METRIC_LABELS
from openbell.errors import ConfigError
from openbell.research import records, report
from openbell.research.backtest import BacktestSpec, Planner, Progress, run_backtest
from openbell.research.compare import RANKERS, compare_rankers, comparison_table
from openbell.research.console import format_metric
from openbell.research.results import BacktestResult
from openbell.research.sweep import SweepOutcome, SweepSpec, run_sweep

REPORTS = "reports"  # under the data folder


@dataclass(frozen=True)
class Finished:
    """A research job done: its result and where its report is."""

    result: BacktestResult
    report: Path


def new_run_id(kind: str) -> str:
    return f"{kind}-{datetime.now(calendar.NEW_YORK):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def report_path(spec: BacktestSpec, run_id: str, given: Path | None) -> Path:
    """Where the report goes: the path given, else `<data dir>/reports/<run id>.html`; checked before any work."""
    path = given if given is not None else spec.settings.data.dir / REPORTS / f"{run_id}.html"
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"the report is an HTML file: give a path ending in .html, not {path}")
    if path.exists() and path.is_dir():
        raise ConfigError(f"cannot write the report to {path}: it is a folder; give a file path ending in .html")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".openbell-write-test-{uuid.uuid4().hex}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        why = exc.strerror or exc
        raise ConfigError(f"cannot write the report to {path}: {why}; choose another --report path") from None
    return path


def backtest(
    spec: BacktestSpec,
    *,
    report_to: Path | None = None,
    planner: Planner | None = None,
    progress: Progress = lambda *_: None,
    run_id: str | None = None,
) -> Finished:
    """Backtest, write the HTML report, then record the run in DuckDB (all of it or nothing)."""
    run_id = run_id or new_run_id("backtest")
    path = report_path(spec, run_id, report_to)
    store = wiring.store_for(spec.settings)  # a locked or foreign database fails here, before the work
    started_at, started = datetime.now(calendar.NEW_YORK), time.perf_counter()
    result = run_backtest(spec, run_id=run_id, planner=planner, progress=progress)
    report.render_backtest(result, path, metric_labels=METRIC_LABELS)
    records.record_run(
        store,
        "backtest",
        {"": result},
        run_id=run_id,
        settings=spec.settings,
        parameters=result.parameters,
        started_at=started_at,
        wall_s=time.perf_counter() - started,
        report_path=path,
    )
    return Finished(result, path)


@dataclass(frozen=True)
class Compared:
    """A comparison done: the table (one row per ranker), each ranker's result, and the report."""

    table: pd.DataFrame
    results: dict[str, BacktestResult]
    report: Path


def compare(
    spec: BacktestSpec,
    *,
    rankers: tuple[str, ...] = RANKERS,
    report_to: Path | None = None,
    progress: Progress = lambda *_: None,
    run_id: str | None = None,
) -> Compared:
    """Backtest the range once per ranker, write the report, record the run (all of it or nothing)."""
    run_id = run_id or new_run_id("compare")
    path = report_path(spec, run_id, report_to)
    store = wiring.store_for(spec.settings)
    started_at, started = datetime.now(calendar.NEW_YORK), time.perf_counter()
    results = compare_rankers(spec, run_id=run_id, rankers=rankers, progress=progress)
    table = comparison_table(results)
    title = f"Rankers compared: {spec.start} to {spec.end}"
    report.render_comparison(table, {name: r.daily for name, r in results.items()}, path, title=title)
    parameters = spec.parameters() | {"rankers": list(results)}
    records.record_run(
        store, "compare", results, run_id=run_id, settings=spec.settings, parameters=parameters,
        started_at=started_at, wall_s=time.perf_counter() - started, report_path=path,
    )  # fmt: skip
    return Compared(table, results, path)


@dataclass(frozen=True)
class Swept:
    """A sweep done: its outcome and where its report is."""

    outcome: SweepOutcome
    report: Path


def sweep(
    spec: SweepSpec,
    *,
    report_to: Path | None = None,
    planner: Planner | None = None,
    progress: Progress = lambda *_: None,
    run_id: str | None = None,
) -> Swept:
    """Sweep the exit grid, write the heatmaps, record every combination's metrics (all of it or nothing)."""
    run_id = run_id or new_run_id("sweep")
    settings = spec.backtest.settings
    path = report_path(spec.backtest, run_id, report_to)
    store = wiring.store_for(settings)
    started_at, started = datetime.now(calendar.NEW_YORK), time.perf_counter()
    outcome = run_sweep(spec, run_id=run_id, planner=planner, progress=progress)
    title = f"Exit sweep {spec.backtest.start} to {spec.backtest.end}: {len(outcome.table):,} combinations"
    report.render_sweep(outcome.table, path, metric=spec.metric, title=title, notes=outcome.notes)
    long = outcome.table.melt(id_vars=["target_pct", "stop_pct", "liquidation"], var_name="metric", value_name="value")
    long["variant"] = (
        "+"
        + long["target_pct"].map("{:g}%".format)
        + " / -"
        + long["stop_pct"].map("{:g}%".format)
        + " / "
        + long["liquidation"]
    )
    records.record_run(
        store, "sweep", {}, run_id=run_id, settings=settings, parameters=outcome.parameters, started_at=started_at,
        wall_s=time.perf_counter() - started, report_path=path, extra_metrics=long[["metric", "value", "variant"]],
    )  # fmt: skip
    return Swept(outcome, path)


def summary_markdown(finished: Finished) -> str:
    """The run's metrics and a link to its report, for a Prefect artifact."""
    result = finished.result
    rows = "\n".join(f"| {METRIC_LABELS.get(k, k)} | {format_metric(k, v)} |" for k, v in result.metrics.items())
    notes = "".join(f"\n- {note}" for note in result.notes)
    return (
        f"# Backtest {result.run_id}\n\n{result.parameters['start']} to {result.parameters['end']}, "
        f"{result.parameters['sessions']} sessions{notes}\n\n{report.link_markdown(finished.report)}\n\n"
        f"| metric | value |\n|---|---|\n{rows}\n"
    )


def sweep_markdown(swept: Swept) -> str:
    """The sweep's overfitting check and a link to its heatmaps, for a Prefect artifact."""
    notes = "\n".join(f"- {note}" for note in swept.outcome.notes)
    return f"# {len(swept.outcome.table):,} combinations\n\n{notes}\n\n{report.link_markdown(swept.report)}\n"
