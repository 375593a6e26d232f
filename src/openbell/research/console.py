"""Research in the terminal: a progress bar over the sessions, and the metrics as a table (rich)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from openbell.core.metrics import METRIC_LABELS, METRIC_ORDER
from openbell.research.backtest import Progress as OnSession

_console = Console(highlight=False, soft_wrap=True)  # a path or a query is never broken over lines


@contextmanager
def session_progress(what: str) -> Iterator[OnSession]:
    """A progress bar over the sessions (on a terminal; nothing when the output is a file or a pipe)."""
    if not _console.is_terminal:
        yield lambda *_: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[day]}"),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=_console, transient=True) as bar:
        task = bar.add_task(what, total=None, day="")

        def advance(day: date, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, day=str(day))

        yield advance


def metrics_table(metrics: Mapping[str, float]) -> Table:
    """The metrics in the report's order, with their labels."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    keys = [k for k in METRIC_ORDER if k in metrics] + [k for k in metrics if k not in METRIC_ORDER]
    for key in keys:
        table.add_row(METRIC_LABELS.get(key, key), format_metric(key, metrics[key]))
    return table


def format_metric(key: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if key.endswith("_usd"):
        return f"${value:,.2f}"
    if key.endswith("_pct"):
        return f"{value:.2f}%"
    if key in ("sessions", "trades", "max_drawdown_sessions") or key.startswith("trades_"):
        return f"{value:,.0f}"
    return f"{value:.2f}"


def print_backtest(finished, database: Path) -> None:
    """The run's metrics, its notes, and where to look next."""
    result = finished.result
    p = result.parameters
    title = (f"backtest {result.run_id}: {p['start']} to {p['end']}, {p['sessions']} sessions, "
             f"ranker {p['ranker']}, exits +{p['exits']['target_pct']}% / -{p['exits']['stop_pct']}%")  # fmt: skip
    _console.print(title)
    _console.print(metrics_table(result.metrics))
    for note in result.notes:
        _console.print(f"note: {note}")
    _console.print(f"\nreport: {finished.report}")
    _explore(database, "backtest_trades", result.run_id)


def print_summary(summary: dict, database: Path) -> None:
    """What the backtest flow returned: its metrics and where its report is."""
    _console.print(f"backtest {summary['run_id']}")
    _console.print(metrics_table(summary["metrics"]))
    _console.print(f"\nreport: {summary['report']}")
    _explore(database, "backtest_trades", summary["run_id"])


COMPARED_METRICS = ("total_return_pct", "sharpe", "max_drawdown_pct", "win_rate_pct", "profit_factor", "trades")


def print_comparison(compared, database: Path) -> None:
    """One row per ranker, the key metrics side by side, best total return first."""
    table = Table(title=None, box=None, pad_edge=False)
    table.add_column("ranker", style="bold", no_wrap=True, min_width=14)
    for key in COMPARED_METRICS:
        table.add_column(METRIC_LABELS.get(key, key), justify="right")
    for row in compared.table.itertuples(index=False):
        table.add_row(row.ranker, *(format_metric(key, getattr(row, key)) for key in COMPARED_METRICS))
    _console.print(table)
    run_id = next(iter(compared.results.values())).run_id
    _console.print(f"\nreport: {compared.report}")
    _explore(database, "backtest_metrics", run_id)


def _explore(database: Path, table: str, run_id: str) -> None:
    _console.print(f"explore it: openbell query --db {database} \"SELECT * FROM {table} WHERE run_id = '{run_id}'\"")


def print_sweep(swept, database: Path, rows: int = 10) -> None:
    """The best combinations by the ranking metric, then the overfitting check."""
    outcome = swept.outcome
    metric = outcome.parameters["metric"]
    table = Table(box=None, pad_edge=False)
    for column in ("target", "stop", "liquidation", METRIC_LABELS.get(metric, metric), "in sample", "out of sample",
                   "Total return %", "Trades"):  # fmt: skip
        table.add_column(column, justify="right")
    best = outcome.table.sort_values(metric, ascending=False, na_position="last").head(rows)
    for row in best.itertuples(index=False):
        table.add_row(
            f"+{row.target_pct:g}%", f"-{row.stop_pct:g}%", row.liquidation, format_metric(metric, getattr(row, metric)),
            format_metric(metric, getattr(row, f"in_sample_{metric}")),
            format_metric(metric, getattr(row, f"out_of_sample_{metric}")),
            format_metric("total_return_pct", row.total_return_pct), format_metric("trades", row.trades),
        )  # fmt: skip
    _console.print(
        f"{len(outcome.table):,} combinations over {outcome.parameters['sessions']} sessions, best {rows} by {metric}:"
    )
    _console.print(table)
    for note in outcome.notes:
        _console.print(f"note: {note}")
    _console.print(f"\nreport: {swept.report}")
    _explore(database, "backtest_metrics", outcome.run_id)


def print_notes(summary: dict) -> None:
    """What a research flow run returned: its notes and where its report is."""
    for note in summary.get("notes", []):
        _console.print(f"note: {note}")
    _console.print(f"report: {summary['report']}")
