"""The HTML reports: self-contained, escaped, written atomically, and drawn by a real browser without errors."""

from __future__ import annotations

import dataclasses
import html
import math
import re
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from openbell.errors import ConfigError
from openbell.research.report import link_markdown, render_backtest, render_comparison, render_sweep
from openbell.research.results import DAILY_COLUMNS, TRADE_COLUMNS, BacktestResult

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
NEW_YORK = ZoneInfo("America/New_York")
BACKTEST_CHARTS = 6  # equity+drawdown, daily P&L, returns, exit reasons, MFE vs MAE, missed move
EVIL_SYMBOL = "<script>alert(1)</script>"
LABELS = {"total_return_pct": "Total return %", "sharpe": "Sharpe", "profit_factor": "Profit factor"}


# -- results built by hand -------------------------------------------------------------------------


def _trade(day: date, symbol: str, shares: int, entry: float, exit_: float, reason: str, exit_time: str, **pct) -> dict:
    commission = 1.0
    return {
        "trade_date": day,
        "symbol": symbol,
        "ranker": "gap_x_rvol",
        "shares": shares,
        "entry_ts": datetime.combine(day, datetime.strptime("09:30", "%H:%M").time(), NEW_YORK),
        "entry_price": entry,
        "exit_ts": datetime.combine(day, datetime.strptime(exit_time, "%H:%M").time(), NEW_YORK),
        "exit_price": exit_,
        "exit_reason": reason,
        "commission": commission,
        "pnl": round(shares * (exit_ - entry) - commission, 2),
        "return_pct": round((exit_ / entry - 1) * 100, 4),
        **pct,
    }


def _daily(days: list[date], trades: pd.DataFrame, starting_equity: float) -> pd.DataFrame:
    rows, equity, peak = [], starting_equity, starting_equity
    for day in days:
        todays = trades[trades["trade_date"] == day] if not trades.empty else trades
        pnl = float(todays["pnl"].sum()) if not todays.empty else 0.0
        notional = float((todays["shares"] * todays["entry_price"]).sum()) if not todays.empty else 0.0
        exposure = notional / equity
        equity += pnl
        peak = max(peak, equity)
        rows.append((day, equity, pnl, exposure, (equity / peak - 1) * 100, len(todays)))
    return pd.DataFrame(rows, columns=list(DAILY_COLUMNS))


def _result(trade_rows: list[dict], days: list[date], metrics: dict[str, float], **extra) -> BacktestResult:
    trades = pd.DataFrame(trade_rows, columns=list(TRADE_COLUMNS))
    reach = pd.DataFrame(
        {"level_pct": [1.0, 2.0, 3.0], "trades": [4, 4, 4], "reached": [3, 2, 1], "reached_pct": [75.0, 50.0, 25.0]}
    )
    fields = {
        "run_id": "bt-20180220-0001",
        "parameters": {
            "start": "2018-02-20",
            "end": "2018-02-22",
            "ranker": "gap_x_rvol",
            "exits": {"target_pct": 2.0, "stop_pct": 1.0, "liquidation": "15:45"},
            "starting_equity": 100_000.0,
        },
        "starting_equity": 100_000.0,
        "trades": trades,
        "daily": _daily(days, trades, 100_000.0),
        "metrics": metrics,
        "target_reach": reach if trade_rows else pd.DataFrame(),
        "notes": ("2018-02-21: 3 picks skipped (no minute bars)",),
    }
    return BacktestResult(**(fields | extra))


DAYS = [date(2018, 2, 20), date(2018, 2, 21), date(2018, 2, 22)]
TRADES = [
    _trade(DAYS[0], "AAPL", 50, 171.85, 175.29, "target", "10:12", mfe_pct=2.0, mae_pct=-0.41, open_high_pct=3.1),
    _trade(DAYS[0], "TSLA", 30, 334.00, 330.66, "stop", "09:48", mfe_pct=0.3, mae_pct=-1.0, open_high_pct=0.52),
    _trade(DAYS[1], "NVDA", 40, 240.00, 242.40, "eod", "15:45", mfe_pct=1.6, mae_pct=-0.22, open_high_pct=1.8),
    _trade(DAYS[2], "AMD", 200, 12.00, 11.88, "stop", "11:05", mfe_pct=0.5, mae_pct=-1.0, open_high_pct=0.8),
]
METRICS = {
    "total_return_pct": 0.1398,
    "sharpe": 4.8712,
    "max_drawdown_pct": -0.02496,
    "max_drawdown_sessions": 1.0,
    "trades": 4.0,
    "win_rate_pct": 50.0,
    "profit_factor": 2.1063,
    "expectancy_usd": 34.95,
    "avg_loss_usd": -63.1,
}


@pytest.fixture
def result() -> BacktestResult:
    return _result(TRADES, DAYS, METRICS)


@pytest.fixture
def no_trades() -> BacktestResult:
    metrics = {"total_return_pct": 0.0, "sharpe": math.nan, "trades": 0.0, "profit_factor": math.nan}
    return _result([], DAYS, metrics, notes=("no candidates on any day",))


@pytest.fixture
def one_session() -> BacktestResult:
    # one winning trade on one day: Sharpe undefined (one return), profit factor infinite (no loss)
    metrics = {"total_return_pct": 0.171, "sharpe": math.nan, "trades": 1.0, "profit_factor": math.inf}
    return _result(TRADES[:1], DAYS[:1], metrics)


@pytest.fixture
def sweep() -> pd.DataFrame:
    rows = []
    for liquidation in ("15:00", "15:45"):
        for target in (1.0, 2.0, 3.0):
            for stop in (0.5, 1.0):
                sharpe = target - stop + (0.5 if liquidation == "15:45" else 0.0)
                rows.append(
                    {
                        "target_pct": target,
                        "stop_pct": stop,
                        "liquidation": liquidation,
                        "sharpe": sharpe,
                        "in_sample_sharpe": sharpe + 0.3,
                        "out_of_sample_sharpe": sharpe - 0.4,
                        "total_return_pct": sharpe * 1.5,
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture
def comparison() -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    rows = pd.DataFrame(
        {
            "ranker": ["gap_x_rvol", "ensemble", "llm"],
            "total_return_pct": [0.14, 0.31, -0.05],
            "sharpe": [4.87, 6.2, math.nan],
            "trades": [4.0, 5.0, 3.0],
        }
    )
    equity = {
        ranker: pd.DataFrame({"trade_date": DAYS, "equity": [100_000 + step * (i + 1) for i in range(3)]})
        for ranker, step in (("gap_x_rvol", 50.0), ("ensemble", 100.0), ("llm", -20.0))
    }
    return rows, equity


# -- reading the HTML back -------------------------------------------------------------------------


class _Tables(HTMLParser):
    """Every table with an id, as rows of cell texts (entities decoded); the header row first."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id", ""), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            self._table[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _tables(path: Path) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.tables


def _text_of(path: Path, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:p|ul)>', path.read_text(encoding="utf-8"), re.S)
    assert found, f"no element with id {element_id}"
    return html.unescape(re.sub(r"<[^>]+>", " ", found.group(1)))


def _chart_divs(page: str) -> int:
    return page.count('class="plotly-graph-div"')


# -- without a browser -----------------------------------------------------------------------------


@pytest.fixture
def three_reports(tmp_path, result, sweep, comparison) -> list[Path]:
    rows, equity = comparison
    return [
        render_backtest(result, tmp_path / "backtest.html"),
        render_sweep(sweep, tmp_path / "sweep.html", metric="sharpe", title="Exit sweep"),
        render_comparison(rows, equity, tmp_path / "comparison.html", title="Rankers"),
    ]


def test_every_report_embeds_plotly_js_exactly_once(three_reports):
    bundle = get_plotlyjs()
    assert [p.read_text(encoding="utf-8").count(bundle) for p in three_reports] == [1, 1, 1]


def test_no_report_loads_anything_from_the_network(three_reports):
    for path in three_reports:
        page = path.read_text(encoding="utf-8")
        assert re.findall(r"<script[^>]*\ssrc=", page) == []
        assert re.findall(r"<link[^>]*href=\"https?:", page) == []


def test_backtest_report_has_a_div_for_each_chart(tmp_path, result):
    page = render_backtest(result, tmp_path / "r.html").read_text(encoding="utf-8")
    assert _chart_divs(page) == BACKTEST_CHARTS


def test_text_from_the_data_is_escaped_everywhere(tmp_path, result):
    trades = result.trades.assign(symbol=[EVIL_SYMBOL, "TSLA", "NVDA", "AMD"])
    hostile = dataclasses.replace(
        result,
        run_id="<i>run</i>",
        trades=trades,
        parameters={"ranker": "</td><td>injected"},
        notes=("<img src=x onerror=alert(2)>",),
    )
    page = render_backtest(hostile, tmp_path / "r.html").read_text(encoding="utf-8")
    for raw in (EVIL_SYMBOL, "<i>run</i>", "</td><td>injected", "<img src=x"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page


def test_an_escaped_symbol_reads_as_itself_in_the_trades_table(tmp_path, result):
    trades = result.trades.assign(symbol=[EVIL_SYMBOL, "TSLA", "NVDA", "AMD"])
    path = render_backtest(dataclasses.replace(result, trades=trades), tmp_path / "r.html")
    header, first, *_ = _tables(path)["trades"]
    assert first[header.index("symbol")] == EVIL_SYMBOL


def test_metrics_table_shows_the_labels_given_and_the_key_otherwise(tmp_path, result):
    path = render_backtest(result, tmp_path / "r.html", metric_labels=LABELS)
    names = [row[0] for row in _tables(path)["metrics"][1:]]
    assert names[:3] == ["Total return %", "Sharpe", "max_drawdown_pct"]


def test_metrics_table_formats_percents_dollars_counts_and_ratios(tmp_path, result):
    path = render_backtest(result, tmp_path / "r.html")
    values = dict(_tables(path)["metrics"][1:])
    assert values == {
        "total_return_pct": "0.14%",
        "sharpe": "4.87",
        "max_drawdown_pct": "-0.02%",
        "max_drawdown_sessions": "1",
        "trades": "4",
        "win_rate_pct": "50.00%",
        "profit_factor": "2.11",
        "expectancy_usd": "$34.95",
        "avg_loss_usd": "-$63.10",
    }


def test_metrics_table_shows_nan_as_na_and_infinity_as_the_sign(tmp_path, one_session):
    path = render_backtest(one_session, tmp_path / "r.html", metric_labels=LABELS)
    values = dict(_tables(path)["metrics"][1:])
    assert (values["Sharpe"], values["Profit factor"]) == ("n/a", "∞")


def test_header_shows_run_id_range_parameters_and_notes(tmp_path, result):
    path = render_backtest(result, tmp_path / "r.html")
    page = path.read_text(encoding="utf-8")
    parameters = dict(_tables(path)["parameters"][1:])
    assert "Backtest bt-20180220-0001" in page
    assert "2018-02-20 to 2018-02-22 · 3 sessions" in page
    assert parameters["exits.stop_pct"] == "1.0"
    assert "3 picks skipped" in _text_of(path, "notes")


def test_trades_table_lists_each_trade_with_dollars_and_times(tmp_path, result):
    path = render_backtest(result, tmp_path / "r.html")
    header, *rows = _tables(path)["trades"]
    first = dict(zip(header, rows[0]))
    assert len(rows) == 4
    assert (first["symbol"], first["exit_ts"], first["pnl"], first["return_pct"]) == ("AAPL", "10:12:00", "$171.00", "2.00%")


def test_trades_table_stops_at_500_rows_and_says_so(tmp_path, result):
    many = pd.concat([result.trades] * 150, ignore_index=True)  # 600 trades
    path = render_backtest(dataclasses.replace(result, trades=many), tmp_path / "r.html")
    assert len(_tables(path)["trades"]) - 1 == 500
    assert "first 500 of 600 trades" in _text_of(path, "trades-cut")


def test_a_short_trades_table_has_no_cut_note(tmp_path, result):
    page = render_backtest(result, tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'id="trades-cut"' not in page


def test_target_reach_table_shows_how_often_each_level_was_reached(tmp_path, result):
    path = render_backtest(result, tmp_path / "r.html")
    assert _tables(path)["target-reach"] == [
        ["level_pct", "trades", "reached", "reached_pct"],
        ["1.00%", "4", "3", "75.00%"],
        ["2.00%", "4", "2", "50.00%"],
        ["3.00%", "4", "1", "25.00%"],
    ]


def test_a_result_without_trades_renders_every_chart_and_says_no_trades(tmp_path, no_trades):
    path = render_backtest(no_trades, tmp_path / "r.html")
    page = path.read_text(encoding="utf-8")
    assert _chart_divs(page) == BACKTEST_CHARTS
    assert _text_of(path, "trades").strip() == "no trades"
    assert "trades" not in _tables(path)


def test_an_unwritable_folder_raises_a_one_line_config_error(tmp_path, result):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(ConfigError) as raised:
        render_backtest(result, blocker / "report.html")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"cannot write the report to {blocker / 'report.html'}: ")
    assert message.endswith("; choose another --report path")


def test_a_failed_write_leaves_no_temporary_file(tmp_path, result):
    folder_in_the_way = tmp_path / "report.html"
    folder_in_the_way.mkdir()  # the rename onto it fails after the temporary file was written
    with pytest.raises(ConfigError):
        render_backtest(result, folder_in_the_way)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_rewriting_a_report_replaces_it_and_leaves_nothing_else(tmp_path, result, no_trades):
    path = tmp_path / "report.html"
    render_backtest(result, path)
    render_backtest(no_trades, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    assert "trades" not in _tables(path)


def test_a_missing_folder_is_created(tmp_path, result):
    path = render_backtest(result, tmp_path / "reports" / "2018" / "r.html")
    assert path.is_file()


def test_sweep_lists_the_best_combinations_highest_first_with_in_and_out_of_sample(tmp_path, sweep):
    path = render_sweep(sweep, tmp_path / "s.html", metric="sharpe", title="Exit sweep")
    header, *rows = _tables(path)["best-combinations"]
    assert header[:6] == ["target_pct", "stop_pct", "liquidation", "sharpe", "in_sample_sharpe", "out_of_sample_sharpe"]
    assert rows[0][:6] == ["3.00%", "0.50%", "15:45", "3.00", "3.30", "2.60"]
    assert [float(r[3]) for r in rows] == sorted((float(r[3]) for r in rows), reverse=True)


def test_sweep_table_stops_at_the_best_20(tmp_path, sweep):
    bigger = pd.concat([sweep.assign(liquidation=t) for t in ("14:00", "14:30", "15:00", "15:45")], ignore_index=True)
    path = render_sweep(bigger, tmp_path / "s.html", metric="sharpe", title="Exit sweep")
    assert len(_tables(path)["best-combinations"]) - 1 == 20


def test_sweep_shows_its_notes_escaped(tmp_path, sweep):
    notes = ("in-sample best <Sharpe 3.3> is 2.6 out of sample",)
    path = render_sweep(sweep, tmp_path / "s.html", metric="sharpe", title="Exit sweep", notes=notes)
    assert "&lt;Sharpe 3.3&gt;" in path.read_text(encoding="utf-8")
    assert "<Sharpe 3.3>" in _text_of(path, "notes")


def test_sweep_without_the_metric_column_says_which_is_missing(tmp_path, sweep):
    with pytest.raises(ValueError, match=r"lacks the columns \['calmar'\]"):
        render_sweep(sweep, tmp_path / "s.html", metric="calmar", title="Exit sweep")


def test_comparison_table_has_one_row_per_ranker(tmp_path, comparison):
    rows, equity = comparison
    path = render_comparison(rows, equity, tmp_path / "c.html", title="Rankers")
    table = _tables(path)["rankers"]
    assert table[0] == ["ranker", "total_return_pct", "sharpe", "trades"]
    assert [r[0] for r in table[1:]] == ["gap_x_rvol", "ensemble", "llm"]
    assert table[3][2] == "n/a"


def test_comparison_without_a_ranker_column_raises(tmp_path, comparison):
    rows, equity = comparison
    with pytest.raises(ValueError, match="ranker"):
        render_comparison(rows.drop(columns="ranker"), equity, tmp_path / "c.html", title="Rankers")


def test_link_markdown_points_at_the_file_url_and_shows_the_path(tmp_path):
    path = tmp_path / "my reports" / "bt 1.html"
    markdown = link_markdown(path)
    assert f"]({path.resolve().as_uri()})" in markdown
    assert "file://" in markdown and "my%20reports/bt%201.html" in markdown
    assert f"`{path.resolve()}`" in markdown


# -- in headless Chromium --------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)
ALL_CHARTS_DRAWN = """
const charts = [...document.querySelectorAll('.plotly-graph-div')];
return document.readyState === 'complete' && charts.every(c => c.classList.contains('js-plotly-plot') && c.querySelector('.main-svg'));
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"{' and '.join(missing)} absent: `make browser` installs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(driver, path: Path) -> list[str]:
    """Load `path`, wait until plotly has drawn every chart, and return the console's SEVERE messages."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop what the previous page logged
    driver.get(path.as_uri())
    try:
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(ALL_CHARTS_DRAWN))
    except TimeoutException:
        pass  # the count assertions say what is missing; the console usually says why
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _drawn(driver, selector: str = ".js-plotly-plot .main-svg") -> int:
    return driver.execute_script(f"return document.querySelectorAll({selector!r}).length;")


def _charts_drawn(driver) -> int:
    return driver.execute_script(
        "return [...document.querySelectorAll('.js-plotly-plot')].filter(c => c.querySelector('.main-svg')).length;"
    )


def test_the_browser_check_catches_a_script_error(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>throw new Error('boom')</script></body></html>")
    assert any("boom" in message for message in _open(browser, page))


def test_backtest_report_draws_every_chart_without_console_errors(browser, tmp_path, result):
    severe = _open(browser, render_backtest(result, tmp_path / "r.html", metric_labels=LABELS))
    assert (_charts_drawn(browser), severe) == (BACKTEST_CHARTS, [])


def test_backtest_report_plots_a_point_per_trade(browser, tmp_path, result):
    _open(browser, render_backtest(result, tmp_path / "r.html"))
    assert _drawn(browser, "#chart-mfe-mae .scatterlayer .point") == len(result.trades)
    assert _drawn(browser, "#chart-missed-move .scatterlayer .point") == len(result.trades)


def test_report_without_trades_draws_every_chart_saying_no_trades(browser, tmp_path, no_trades):
    severe = _open(browser, render_backtest(no_trades, tmp_path / "r.html"))
    said = browser.execute_script(
        "return [...document.querySelectorAll('.js-plotly-plot .annotation-text')].map(a => a.textContent);"
    )
    assert (_charts_drawn(browser), severe) == (BACKTEST_CHARTS, [])
    assert said == ["no trades"] * 4


def test_report_of_one_session_draws_every_chart_without_console_errors(browser, tmp_path, one_session):
    severe = _open(browser, render_backtest(one_session, tmp_path / "r.html"))
    assert (_charts_drawn(browser), severe) == (BACKTEST_CHARTS, [])


def test_escaped_symbol_shows_as_text_and_runs_nothing(browser, tmp_path, result):
    trades = result.trades.assign(symbol=[EVIL_SYMBOL, "TSLA", "NVDA", "AMD"])
    severe = _open(browser, render_backtest(dataclasses.replace(result, trades=trades), tmp_path / "r.html"))
    cell = browser.execute_script("return document.querySelector('#trades tbody td:nth-child(2)').textContent;")
    assert (cell, severe) == (EVIL_SYMBOL, [])


def test_chart_labels_from_the_data_show_as_text_not_markup(browser, tmp_path, result):
    trades = result.trades.assign(exit_reason=["target", "stop", "eod", "<b>odd</b>"])
    _open(browser, render_backtest(dataclasses.replace(result, trades=trades), tmp_path / "r.html"))
    legend = browser.execute_script(
        "return [...document.querySelectorAll('#chart-mfe-mae .legendtext')].map(t => t.textContent);"
    )
    assert legend == ["target", "stop", "eod", "<b>odd</b>"]


def test_sweep_report_draws_a_heatmap_per_liquidation_time(browser, tmp_path, sweep):
    severe = _open(browser, render_sweep(sweep, tmp_path / "s.html", metric="sharpe", title="Exit sweep"))
    assert (_charts_drawn(browser), _drawn(browser, "#chart-sweep .hm"), severe) == (1, 2, [])


def test_comparison_report_draws_a_curve_per_ranker(browser, tmp_path, comparison):
    rows, equity = comparison
    severe = _open(browser, render_comparison(rows, equity, tmp_path / "c.html", title="Rankers"))
    assert (_charts_drawn(browser), _drawn(browser, "#chart-comparison .scatterlayer .trace"), severe) == (1, 3, [])
