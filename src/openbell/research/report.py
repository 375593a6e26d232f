"""Self-contained HTML reports of a backtest, an exit sweep and a ranker comparison: plotly charts next to the numbers.

Each report is one file that opens offline: plotly.js is embedded once in the page's head and every
chart is a plotly div after it. Text that comes from data (symbols, reasons, notes, parameters, run
ids) is HTML-escaped, in tables and in the charts' labels and hover texts alike. Files are written
atomically: a temporary file in the same folder, then a rename.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import numbers
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from openbell.errors import ConfigError
from openbell.research.results import TRADE_COLUMNS, BacktestResult

MAX_TRADE_ROWS = 500  # a longer trades table makes a page nobody scrolls; the full list is in the run's data
BEST_COMBINATIONS = 20
SWEEP_FACET_COLUMNS = 3  # liquidation times side by side before the heatmaps wrap to a new row

_GREEN, _RED, _GREY, _BLUE = "#1a9850", "#d73027", "#7f7f7f", "#2c7fb8"
_REASON_COLOURS = {"target": _GREEN, "stop": _RED, "eod": _GREY}
_PALETTE = ("#2c7fb8", "#984ea3", "#ff7f00", "#a65628", "#e7298a", "#66a61e", "#e6ab02", "#1b9e77")
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
_WEEKENDS = [{"bounds": ["sat", "mon"]}]  # sessions only: no flat stretch every Saturday and Sunday
_TICK_EVERY_SESSION_UP_TO = 15

_DOLLAR_COLUMNS = frozenset({"entry_price", "exit_price", "commission", "pnl", "equity", "starting_equity"})
_COUNT_COLUMNS = frozenset({"trades", "sessions", "shares", "reached", "combinations"})
_SIGNED_COLUMNS = frozenset({"pnl", "return_pct"})  # coloured green or red in tables

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0; background: #fafafa; }
main { max-width: 1400px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.subtitle { color: #555; margin: 0 0 12px; }
.grid { display: grid; grid-template-columns: 1fr; gap: 8px 24px; }
@media (min-width: 1100px) {
  .grid.two { grid-template-columns: 1fr 1fr; }
  .grid.side { grid-template-columns: minmax(280px, 1fr) 3fr; }
}
.grid > section { min-width: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; background: #fff; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.pos { color: #1a7a3e; } td.neg { color: #b2182b; }
tbody tr:nth-child(even) { background: #f8f8f8; }
ul.notes { background: #fff8e1; border-left: 3px solid #f0b400; padding: 8px 8px 8px 28px; margin: 8px 0; }
p.empty, p.note { color: #666; font-style: italic; }
details { margin: 6px 0; } summary { cursor: pointer; color: #333; }
.chart { background: #fff; }
"""


# -- the reports -----------------------------------------------------------------------------------


def render_backtest(result: BacktestResult, path: Path, *, metric_labels: Mapping[str, str] | None = None) -> Path:
    """Write one backtest's report: header, metrics, equity and drawdown, daily P&L, trade charts, trades.

    Args:
        result: the backtest to show; zero trades and a single session are fine.
        path: the HTML file to write (its folder is created when missing).
        metric_labels: metric key -> label for the metrics table; a key without a label shows as itself.

    Raises:
        ConfigError: the file cannot be written there.
    """
    trades, daily = result.trades, result.daily
    body = [
        _backtest_header(result),
        _grid(
            "side",
            _section("Metrics", _metrics_table(result.metrics, metric_labels or {})),
            _section("Equity and drawdown", _chart(_equity_figure(daily, result.starting_equity), "chart-equity")),
        ),
        _section("Daily P&L", _chart(_daily_pnl_figure(daily), "chart-daily-pnl")),
        _grid(
            "two",
            _section("Distribution of trade returns", _chart(_return_histogram(trades), "chart-returns")),
            _section("Exit reasons", _chart(_exit_reason_figure(trades), "chart-exit-reasons")),
        ),
        _grid(
            "two",
            _section("Best and worst move while held (MFE vs MAE)", _chart(_mfe_mae_figure(trades), "chart-mfe-mae")),
            _section(
                "The missed move: open-to-high against the realised return",
                _chart(_missed_move_figure(trades), "chart-missed-move"),
                _target_reach_table(result.target_reach),
            ),
        ),
        _section("Trades", _trades_table(trades)),
    ]
    return _write_report(path, _page(f"Backtest {result.run_id}", body))


def render_sweep(table: pd.DataFrame, path: Path, *, metric: str, title: str, notes: Sequence[str] = ()) -> Path:
    """Write an exit sweep's report: a heatmap of `metric` over target x stop per liquidation time, the best rows.

    Args:
        table: one row per combination: target_pct, stop_pct, liquidation ("15:45"), `metric` and any other
            metric columns (in_sample_<metric> and out_of_sample_<metric> are shown next to `metric`).
        path: the HTML file to write.
        metric: the column to colour the heatmaps by and to rank the combinations by, highest first.
        title: the page's heading.
        notes: shown under the heading, e.g. the overfitting check.

    Raises:
        ValueError: `table` lacks one of the columns above.
        ConfigError: the file cannot be written there.
    """
    _require_columns(table, ("target_pct", "stop_pct", "liquidation", metric), "the sweep table")
    best = _best_combinations(table, metric)
    body = [
        _heading(title, f"{len(table):,} combinations, coloured and ranked by {metric}", notes),
        _section(f"{metric} by target and stop, per liquidation time", _chart(_sweep_figure(table, metric), "chart-sweep")),
        _section(
            f"The best {min(BEST_COMBINATIONS, len(best))} combinations by {metric}",
            _frame_table(best, table_id="best-combinations", empty="no combinations"),
        ),
    ]
    return _write_report(path, _page(title, body))


def render_comparison(rows: pd.DataFrame, equity: Mapping[str, pd.DataFrame], path: Path, *, title: str) -> Path:
    """Write a ranker comparison: one table row per ranker and every ranker's equity curve on one chart.

    Args:
        rows: one row per ranker: `ranker` and metric columns.
        equity: ranker -> its daily frame (trade_date, equity).
        path: the HTML file to write.
        title: the page's heading.

    Raises:
        ValueError: `rows` has no `ranker` column.
        ConfigError: the file cannot be written there.
    """
    _require_columns(rows, ("ranker",), "the comparison table")
    ordered = ["ranker", *(c for c in rows.columns if c != "ranker")]
    body = [
        _heading(title, f"{len(rows):,} rankers", ()),
        _section("Rankers", _frame_table(rows[ordered], table_id="rankers", empty="no rankers")),
        _section("Equity", _chart(_comparison_figure(rows, equity), "chart-comparison")),
    ]
    return _write_report(path, _page(title, body))


def link_markdown(path: Path) -> str:
    """Markdown for a Prefect artifact: a file:// link to the report and its path to copy.

    Browsers often refuse file:// links from an http page (the Prefect UI), hence the path as text too.
    """
    resolved = Path(path).resolve()
    name = resolved.name.replace("[", r"\[").replace("]", r"\]")
    return f"[{name}]({resolved.as_uri()})\n\n`{resolved}`"


# -- the backtest's figures ------------------------------------------------------------------------


def _equity_figure(daily: pd.DataFrame, starting_equity: float) -> go.Figure:
    if daily.empty:
        return _message_figure("no sessions")
    dates = _dates(daily["trade_date"])
    mode = _line_mode(len(daily))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32], vertical_spacing=0.04)
    fig.add_trace(
        go.Scatter(
            x=dates,
            y=daily["equity"],
            mode=mode,
            name="equity",
            line={"color": _BLUE},
            hovertemplate="%{x|%Y-%m-%d}<br>equity $%{y:,.2f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_hline(y=starting_equity, line={"color": _GREY, "dash": "dot", "width": 1}, row=1, col=1)
    fig.add_trace(
        go.Scatter(
            x=dates,
            y=daily["drawdown_pct"],
            mode=mode,
            name="drawdown",
            fill="tozeroy",
            line={"color": _RED},
            fillcolor="rgba(215, 48, 39, 0.25)",
            hovertemplate="%{x|%Y-%m-%d}<br>drawdown %{y:.2f}%<extra></extra>",
        ),
        row=2,
        col=1,
    )
    fig.update_yaxes(title_text="equity", tickprefix="$", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", ticksuffix="%", rangemode="tozero", row=2, col=1)
    _session_axis(fig, dates)
    return _styled(fig, height=520, legend=False)


def _daily_pnl_figure(daily: pd.DataFrame) -> go.Figure:
    if daily.empty:
        return _message_figure("no sessions")
    pnl = daily["pnl"].to_numpy(dtype=float)
    dates = _dates(daily["trade_date"])
    fig = go.Figure(
        go.Bar(
            x=dates,
            y=pnl,
            marker_color=np.where(pnl < 0, _RED, _GREEN),
            customdata=daily["trades"] if "trades" in daily else None,
            hovertemplate="%{x|%Y-%m-%d}<br>P&L $%{y:,.2f}"
            + ("<br>%{customdata} trades" if "trades" in daily else "")
            + "<extra></extra>",
        )
    )
    _session_axis(fig, dates)
    fig.update_yaxes(title_text="net P&L", tickprefix="$")
    return _styled(fig, height=300, legend=False)


def _return_histogram(trades: pd.DataFrame) -> go.Figure:
    if trades.empty:
        return _message_figure("no trades")
    fig = go.Figure(
        go.Histogram(
            x=trades["return_pct"],
            marker={"color": _BLUE, "line": {"color": "white", "width": 1}},
            hovertemplate="return %{x}%<br>%{y} trades<extra></extra>",
        )
    )
    fig.add_vline(x=0, line={"color": _GREY, "dash": "dot", "width": 1})
    fig.update_xaxes(title_text="return per trade", ticksuffix="%")
    fig.update_yaxes(title_text="trades")
    return _styled(fig, height=380, legend=False)


def _exit_reason_figure(trades: pd.DataFrame) -> go.Figure:
    if trades.empty:
        return _message_figure("no trades")
    reasons = trades["exit_reason"].astype(str)
    counts = reasons.value_counts()
    order = _reason_order(reasons)
    fig = go.Figure(
        go.Bar(
            x=[_esc(r) for r in order],
            y=[int(counts[r]) for r in order],
            marker_color=_reason_colours(order),
            hovertemplate="%{x}: %{y} trades<extra></extra>",
        )
    )
    fig.update_xaxes(type="category", title_text="exit reason")
    fig.update_yaxes(title_text="trades")
    return _styled(fig, height=380, legend=False)


def _mfe_mae_figure(trades: pd.DataFrame) -> go.Figure:
    if trades.empty:
        return _message_figure("no trades")
    fig = _scatter_by_reason(trades, x="mae_pct", y="mfe_pct")
    fig.update_xaxes(title_text="MAE: worst move while held", ticksuffix="%")
    fig.update_yaxes(title_text="MFE: best move while held", ticksuffix="%")
    return _styled(fig, height=420)


def _missed_move_figure(trades: pd.DataFrame) -> go.Figure:
    if trades.empty:
        return _message_figure("no trades")
    fig = _scatter_by_reason(trades, x="open_high_pct", y="return_pct")
    values = pd.concat([trades["open_high_pct"], trades["return_pct"]]).astype(float)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    fig.add_trace(
        go.Scatter(
            x=[low, high],
            y=[low, high],
            mode="lines",
            name="return = open-to-high",
            line={"color": _GREY, "dash": "dash", "width": 1},
            hoverinfo="skip",
        )
    )
    fig.update_xaxes(title_text="open-to-high of the day", ticksuffix="%")
    fig.update_yaxes(title_text="realised return", ticksuffix="%")
    return _styled(fig, height=420)


def _scatter_by_reason(trades: pd.DataFrame, *, x: str, y: str) -> go.Figure:
    """One trace per exit reason, each point a trade whose hover shows its symbol, day and P&L."""
    reasons = trades["exit_reason"].astype(str)
    hover = [
        f"{_esc(symbol)} {_esc(_plain(day))}<br>P&amp;L {_format_value('pnl', pnl)}"
        for symbol, day, pnl in zip(trades["symbol"], trades["trade_date"], trades["pnl"], strict=True)
    ]
    hover = pd.Series(hover, index=trades.index)
    fig = go.Figure()
    for reason, colour in zip(_reason_order(reasons), _reason_colours(_reason_order(reasons)), strict=True):
        picked = reasons == reason
        fig.add_trace(
            go.Scatter(
                x=trades.loc[picked, x],
                y=trades.loc[picked, y],
                mode="markers",
                name=_esc(reason),
                marker={"color": colour, "size": 9, "opacity": 0.8, "line": {"color": "white", "width": 1}},
                text=hover[picked],
                hovertemplate=f"%{{text}}<br>{x} %{{x:.2f}}%<br>{y} %{{y:.2f}}%<extra>{_esc(reason)}</extra>",
            )
        )
    return fig


# -- the sweep's and the comparison's figures ------------------------------------------------------


def _sweep_figure(table: pd.DataFrame, metric: str) -> go.Figure:
    if table.empty:
        return _message_figure("no combinations")
    times = sorted(table["liquidation"].astype(str).unique())
    targets = sorted(table["target_pct"].unique())
    stops = sorted(table["stop_pct"].unique())
    columns = min(len(times), SWEEP_FACET_COLUMNS)
    rows = math.ceil(len(times) / columns)
    fig = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[f"liquidate at {_esc(t)}" for t in times],
        horizontal_spacing=0.06,
        vertical_spacing=0.12 if rows > 1 else 0.08,
    )
    show_values = len(targets) * len(stops) <= 120  # beyond that the numbers overlap
    for i, time in enumerate(times):
        cells = (
            table[table["liquidation"].astype(str) == time]
            .groupby(["target_pct", "stop_pct"])[metric]
            .first()
            .unstack("stop_pct")
            .reindex(index=targets, columns=stops)
        )
        z = cells.to_numpy(dtype=float)
        z = np.where(np.isfinite(z), z, np.nan)  # an infinite profit factor would flatten the colour scale
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=[_pct_label(s) for s in stops],
                y=[_pct_label(t) for t in targets],
                coloraxis="coloraxis",
                texttemplate="%{z:.2f}" if show_values else None,
                hovertemplate=f"target %{{y}}<br>stop %{{x}}<br>{_esc(metric)} %{{z:.3f}}<extra>{_esc(time)}</extra>",
            ),
            row=i // columns + 1,
            col=i % columns + 1,
        )
    finite = table[metric].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    spans_zero = finite.size and finite.min() < 0 < finite.max()
    fig.update_layout(
        coloraxis={"colorscale": "RdYlGn", "cmid": 0 if spans_zero else None, "colorbar": {"title": {"text": _esc(metric)}}}
    )
    fig.update_xaxes(type="category", title_text="stop")
    fig.update_yaxes(type="category", title_text="target")
    return _styled(fig, height=140 + 340 * rows, legend=False)


def _comparison_figure(rows: pd.DataFrame, equity: Mapping[str, pd.DataFrame]) -> go.Figure:
    rankers = [r for r in map(str, rows["ranker"]) if r in equity]
    rankers += [r for r in equity if r not in rankers]
    curves = {r: equity[r] for r in rankers if not equity[r].empty}
    if not curves:
        return _message_figure("no equity curves")
    dates = _dates(pd.concat([frame["trade_date"] for frame in curves.values()]).drop_duplicates().sort_values())
    fig = go.Figure()
    for i, (ranker, frame) in enumerate(curves.items()):
        fig.add_trace(
            go.Scatter(
                x=_dates(frame["trade_date"]),
                y=frame["equity"],
                mode=_line_mode(len(dates)),
                name=_esc(ranker),
                line={"color": _PALETTE[i % len(_PALETTE)]},
                hovertemplate=f"{_esc(ranker)}<br>%{{x|%Y-%m-%d}}<br>equity $%{{y:,.2f}}<extra></extra>",
            )
        )
    _session_axis(fig, dates)
    fig.update_yaxes(title_text="equity", tickprefix="$")
    return _styled(fig, height=480)


def _session_axis(fig: go.Figure, dates: pd.Series) -> None:
    """A date axis of sessions: weekends left out, and a tick per session over a short range (not every 6 hours)."""
    fig.update_xaxes(rangebreaks=_WEEKENDS, hoverformat="%Y-%m-%d")
    if len(dates) <= _TICK_EVERY_SESSION_UP_TO:
        fig.update_xaxes(tickmode="array", tickvals=list(dates), tickformat="%b %d")


def _message_figure(message: str) -> go.Figure:
    """An empty chart that says why it is empty, so the page keeps its shape."""
    fig = go.Figure()
    fig.add_annotation(
        text=_esc(message), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16, "color": _GREY}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _styled(fig, height=260, legend=False)


def _styled(fig: go.Figure, *, height: int, legend: bool = True) -> go.Figure:
    """The one layout every chart shares."""
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 64, "r": 24, "t": 48 if legend else 36, "b": 48},  # the legend sits above the plot
        showlegend=legend,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        hovermode="closest",
    )
    return fig


# -- tables ----------------------------------------------------------------------------------------


def _metrics_table(metrics: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    if not metrics:
        return '<p class="empty" id="metrics">no metrics</p>'
    rows = [
        _row([_td(labels.get(key, key)), _td(_format_value(key, value), _cell_class(key, value))])
        for key, value in metrics.items()
    ]
    return _table_html("metrics", ["Metric", "Value"], rows)


def _target_reach_table(target_reach: pd.DataFrame) -> str:
    intro = "<p>How often each target level would have been reached from the entry during the session:</p>"
    return intro + _frame_table(target_reach, table_id="target-reach", empty="no target levels were measured")


def _trades_table(trades: pd.DataFrame) -> str:
    if trades.empty:
        return '<p class="empty" id="trades">no trades</p>'
    columns = [c for c in TRADE_COLUMNS if c in trades.columns]
    shown = trades[columns].head(MAX_TRADE_ROWS)
    table = _frame_table(shown, table_id="trades", empty="no trades")
    if len(trades) <= MAX_TRADE_ROWS:
        return table
    note = f"Showing the first {MAX_TRADE_ROWS:,} of {len(trades):,} trades."
    return f'<p class="note" id="trades-cut">{_esc(note)}</p>{table}'


def _frame_table(frame: pd.DataFrame, *, table_id: str, empty: str) -> str:
    """A plain HTML table of `frame`, each cell formatted by its column's name."""
    if frame.empty:
        return f'<p class="empty" id="{table_id}">{_esc(empty)}</p>'
    columns = [str(c) for c in frame.columns]
    rows = [
        _row([_td(_format_value(col, value), _cell_class(col, value)) for col, value in zip(columns, record, strict=True)])
        for record in frame.itertuples(index=False, name=None)
    ]
    return _table_html(table_id, columns, rows)


def _table_html(table_id: str, headers: Iterable[str], rows: Iterable[str]) -> str:
    head = _row(f"<th>{_esc(h)}</th>" for h in headers)
    return f'<div class="scroll"><table id="{table_id}"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'


def _row(cells: Iterable[str]) -> str:
    return f"<tr>{''.join(cells)}</tr>"


def _td(text: str, css_class: str = "") -> str:
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<td{attribute}>{_esc(text)}</td>"


def _best_combinations(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    keys = ["target_pct", "stop_pct", "liquidation"]
    beside = [c for c in (f"in_sample_{metric}", f"out_of_sample_{metric}") if c in table.columns]
    columns = [*keys, metric, *beside, *(c for c in table.columns if c not in {*keys, metric, *beside})]
    best = table.sort_values(metric, ascending=False, na_position="last", kind="stable").head(BEST_COMBINATIONS)
    return best[columns]


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks the columns {missing}; it has {[str(c) for c in frame.columns]}")


# -- formatting ------------------------------------------------------------------------------------


def _format_value(key: str, value: Any) -> str:
    """A value as a reader expects it from its name: 12.35% for *_pct, -$1,234.50 for dollars, 7 for counts."""
    if _is_missing(value):
        return "n/a"
    if isinstance(value, datetime | date):
        return _format_time(key, value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return _plain(value)
    x = float(value)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if key.endswith("_pct"):
        return f"{x:,.2f}%"
    if key.endswith("_usd") or key in _DOLLAR_COLUMNS:
        return f"-${-x:,.2f}" if x < 0 else f"${x:,.2f}"
    if _is_count(key):
        return f"{x:,.0f}"
    return f"{x:,.2f}"


def _format_time(key: str, value: datetime | date) -> str:
    if not isinstance(value, datetime):
        return value.isoformat()
    if key.endswith("_ts"):  # a trade's timestamps share its row with its date: the time of day is what is new
        return value.strftime("%H:%M:%S")
    if value.tzinfo is None and value.time() == datetime.min.time():  # a session's date held as a timestamp
        return value.strftime("%Y-%m-%d")
    return value.strftime("%Y-%m-%d %H:%M")


def _cell_class(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return ""
    if key in _SIGNED_COLUMNS and value != 0 and not _is_missing(value):
        return "num pos" if float(value) > 0 else "num neg"  # float(): typeshed's numbers.Real has no `>`
    return "num"


def _is_count(key: str) -> bool:
    return key in _COUNT_COLUMNS or key.startswith("trades_") or key.endswith("_sessions") or key.endswith("_trades")


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or a dict: not a scalar, not missing
        return False


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _pct_label(value: float) -> str:
    return f"{float(value):g}%"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _dates(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column)


def _line_mode(points: int) -> str:
    return "lines+markers" if points <= 40 else "lines"  # a single session is a point, not an invisible line


def _reason_order(reasons: pd.Series) -> list[str]:
    present = set(reasons)
    return [r for r in _REASON_COLOURS if r in present] + sorted(present - set(_REASON_COLOURS))


def _reason_colours(reasons: Sequence[str]) -> list[str]:
    others = iter(_PALETTE[1:] * (len(reasons) // (len(_PALETTE) - 1) + 1))
    return [_REASON_COLOURS.get(r) or next(others) for r in reasons]


def _flatten(parameters: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested parameters as dotted keys: {"exits": {"stop_pct": 1}} -> [("exits.stop_pct", 1)]."""
    flat = []
    for key, value in parameters.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat += _flatten(value, f"{name}.")
        else:
            flat.append((name, value))
    return flat


# -- the page --------------------------------------------------------------------------------------


def _backtest_header(result: BacktestResult) -> str:
    daily = result.daily
    if daily.empty:
        span = "no sessions"
    else:
        first, last = _plain(daily["trade_date"].iloc[0]), _plain(daily["trade_date"].iloc[-1])
        sessions = f"{len(daily):,} session" + ("s" if len(daily) != 1 else "")
        span = f"{first} to {last} · {sessions}"
    subtitle = f"{span} · starting equity {_format_value('starting_equity', result.starting_equity)}"
    parameters = [_row([_td(key), _td(_plain(value))]) for key, value in _flatten(result.parameters)]
    table = _table_html("parameters", ["Parameter", "Value"], parameters)
    details = f"<details><summary>Parameters</summary>{table}</details>" if parameters else ""
    return _heading(f"Backtest {result.run_id}", subtitle, result.notes) + details


def _heading(title: str, subtitle: str, notes: Sequence[str]) -> str:
    items = "".join(f"<li>{_esc(note)}</li>" for note in notes)
    notes_html = f'<ul class="notes" id="notes">{items}</ul>' if items else ""
    return f'<header><h1>{_esc(title)}</h1><p class="subtitle">{_esc(subtitle)}</p>{notes_html}</header>'


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{_esc(title)}</h2>{''.join(parts)}</section>"


def _grid(kind: str, *sections: str) -> str:
    return f'<div class="grid {kind}">{"".join(sections)}</div>'


def _chart(fig: go.Figure, div_id: str) -> str:
    """A chart's div and its Plotly.newPlot call; plotly.js itself is in the page's head, once."""
    div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_PLOT_CONFIG)
    return f'<div class="chart">{div}</div>'


def _page(title: str, body: Sequence[str]) -> str:
    # plotly.js goes first, in the head, so every chart's script after it finds Plotly whatever the order of the
    # sections; it is the same bundle `include_plotlyjs=True` would inline into the first chart.
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{_esc(title)}</title><style>{_CSS}</style>'
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
        f'<script charset="utf-8">{get_plotlyjs()}</script>'
        f"</head>\n<body><main>{''.join(body)}</main></body></html>\n"
    )


def _write_report(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically: a temporary file in the same folder, then a rename over `path`."""
    path = Path(path)
    temporary: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as handle:
            temporary = Path(handle.name)
            handle.write(text)
        temporary.chmod(0o644)  # mkstemp makes it private; a report is meant to be opened and shared
        os.replace(temporary, path)
    except OSError as exc:
        if temporary is not None:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
        reason = (exc.strerror or str(exc)).replace("\n", " ")
        raise ConfigError(f"cannot write the report to {path}: {reason}; choose another --report path") from exc
    return path
