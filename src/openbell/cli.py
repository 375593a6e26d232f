"""The openbell command line: demo, replay and query; up, status and down for the scheduled service.

`demo` and `replay` run the Prefect flows in this process; `up` starts a Prefect server and the
process serving the deployments in the background (openbell.service). The CLI is the outermost
edge of the system: it checks what a user can get wrong (dates, files, symbols) before any flow
starts, so mistakes end in one clear line, and it loads the flows by name (the package never
imports them).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from pydantic import ValidationError

from openbell.errors import ConfigError, OpenbellError

if TYPE_CHECKING:
    from openbell.store.db import Book


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except OpenbellError as exc:
        print(f"openbell: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("openbell: interrupted", file=sys.stderr)
        return 130


_DB_HELP = "the store's catalog file (default data/openbell.ducklake)"


def _parser() -> argparse.ArgumentParser:
    from openbell.config import default_of, described  # the flags' help: the settings' defaults and descriptions

    parser = argparse.ArgumentParser(prog="openbell", description="A day-trading system run as Prefect flows.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="generate a synthetic market and replay a day through the flows")
    demo.add_argument("--db", type=Path, help=_DB_HELP)
    demo.set_defaults(command=_demo)

    replay = commands.add_parser("replay", help="replay one day from Parquet bars through the flows")
    replay.add_argument("--date", required=True, type=_date, help="the session to replay, YYYY-MM-DD")
    _add_day_options(replay)
    replay.set_defaults(command=_replay)

    backtest = commands.add_parser(
        "backtest", help="backtest a date range of the replay data: the day's decisions on one account, metrics, a report"
    )
    backtest.add_argument("--start", required=True, type=_date, help="first session, YYYY-MM-DD")
    backtest.add_argument("--end", required=True, type=_date, help="last session, YYYY-MM-DD")
    _add_day_options(backtest)
    backtest.add_argument("--slippage-bps", type=_decimal, help=described("OPENBELL_BROKER__SLIPPAGE_BPS", flag=True))
    backtest.add_argument(
        "--starting-equity",
        type=_decimal,
        help=described("OPENBELL_BROKER__STARTING_CASH", ", and a backtest's starting equity", flag=True),
    )
    backtest.add_argument("--report", type=Path, help="the HTML report (default data/reports/<run id>.html)")
    backtest.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="plan the sessions on this Dask scheduler, e.g. tcp://10.0.0.5:8786 (runs the flow)",
    )
    backtest.set_defaults(command=_backtest)

    sweep = commands.add_parser("sweep", help="every target x stop x liquidation over the same sessions, ranked")
    sweep.add_argument("--start", required=True, type=_date, help="first session, YYYY-MM-DD")
    sweep.add_argument("--end", required=True, type=_date, help="last session, YYYY-MM-DD")
    sweep.add_argument(
        "--target-pct", dest="target_grid", required=True, help="targets, percent: FROM:TO:STEP (1:4:0.25) or a list (2,3)"
    )
    sweep.add_argument("--stop-pct", dest="stop_grid", required=True, help="stops, percent: FROM:TO:STEP or a list")
    liquidation = default_of("OPENBELL_EXITS__LIQUIDATION_TIME")
    sweep.add_argument(
        "--liquidation", default=liquidation, help=f"liquidation times, New York (default {liquidation}), e.g. 15:45,15:00"
    )
    sweep.add_argument("--metric", default="sharpe", help="rank by this metric (default sharpe; total_return_pct, ...)")
    sweep.add_argument("--in-sample", type=float, default=0.5, help="share of the sessions to choose on (default 0.5)")
    _add_day_options(sweep, exits=False)
    sweep.add_argument("--report", type=Path, help="the HTML report (default data/reports/<run id>.html)")
    sweep.add_argument(
        "--dask", metavar="ADDRESS", help="plan the sessions on this Dask scheduler, e.g. tcp://10.0.0.5:8786"
    )
    sweep.set_defaults(command=_sweep)

    compare = commands.add_parser("compare", help="backtest a date range once per ranker, side by side")
    compare.add_argument("--start", required=True, type=_date, help="first session, YYYY-MM-DD")
    compare.add_argument("--end", required=True, type=_date, help="last session, YYYY-MM-DD")
    _add_day_options(compare)
    compare.add_argument(
        "--rankers", type=_names, help="rankers to compare (default: gap_x_rvol, each voter, ensemble, llm if configured)"
    )
    compare.add_argument("--report", type=Path, help="the HTML report (default data/reports/<run id>.html)")
    compare.set_defaults(command=_compare)

    flatten = commands.add_parser(
        "flatten", help="now: cancel the system's open orders, sell what it opened, no new order today"
    )
    flatten.add_argument("--dry-run", action="store_true", help="say what would be cancelled and sold; send nothing")
    flatten.add_argument("--db", type=Path, help=_DB_HELP)
    flatten.add_argument(
        "--replay", metavar="DATE@HH:MM", type=_replay_moment, help="flatten a replayed day at that time instead of today"
    )
    flatten.set_defaults(command=_flatten)

    risk = commands.add_parser("risk", help="the risk guards: what they did, and resuming entries after a drawdown halt")
    risk_commands = risk.add_subparsers(required=True, metavar="ACTION")
    risk_status = risk_commands.add_parser("status", help="the limits in force and the guards' latest events")
    risk_status.add_argument("--db", type=Path, help=_DB_HELP)
    risk_status.add_argument("--replay", action="store_true", help="the replays' guards instead of live trading's")
    risk_status.set_defaults(command=_risk_status)
    risk_reset = risk_commands.add_parser("reset", help="resume new entries after a drawdown halt")
    risk_reset.add_argument("--db", type=Path, help=_DB_HELP)
    risk_reset.add_argument("--replay", action="store_true", help="resume the replays' entries instead of live trading's")
    risk_reset.set_defaults(command=_risk_reset)

    reconcile = commands.add_parser("reconcile", help="a day traded live against the same day replayed, trade by trade")
    reconcile.add_argument("--date", type=_date, required=True, help="the session, e.g. 2018-03-01")
    reconcile.add_argument("--db", type=Path, help=_DB_HELP)
    reconcile.add_argument("--tolerance-pct", type=_decimal, default=Decimal(5),
                           help="the verdict's tolerance, percent of the replayed net P&L (default 5)")  # fmt: skip
    reconcile.set_defaults(command=_reconcile)

    query = commands.add_parser("query", help="run SQL on the openbell database (read-only)")
    query.add_argument("sql", help='e.g. "SELECT * FROM trades ORDER BY trade_date"')
    query.add_argument("--db", type=Path, help=_DB_HELP)
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    query.set_defaults(command=_query)

    store = commands.add_parser("store", help="the store: attach it elsewhere, import an old DuckDB file, compact it")
    store_commands = store.add_subparsers(required=True, metavar="ACTION")
    attach = store_commands.add_parser("attach", help="print how to open the store in the DuckDB CLI and in Python")
    attach.add_argument("--db", type=Path, help=_DB_HELP)
    attach.set_defaults(command=_store_attach)
    migrate = store_commands.add_parser("migrate", help="move an earlier openbell's DuckDB file into the store")
    migrate.add_argument("file", nargs="?", type=Path, help="the DuckDB file (default data/openbell.duckdb)")
    migrate.add_argument("--db", type=Path, help=_DB_HELP)
    migrate.set_defaults(command=_store_migrate)
    housekeep = store_commands.add_parser(
        "housekeep", help="write small writes out to Parquet, expire old snapshots (the report and backtests do it too)"
    )
    housekeep.add_argument("--db", type=Path, help=_DB_HELP)
    housekeep.add_argument("--merge", action="store_true", help="merge each table's small files now, whatever their number")
    housekeep.set_defaults(command=_store_housekeep)

    up = commands.add_parser("up", help="start a Prefect server and serve the scheduled deployments, in the background")
    up.add_argument("--port", type=_port, default=4200, help="the server's port on 127.0.0.1 (default 4200)")
    up.set_defaults(command=_up)

    status = commands.add_parser("status", help="what runs, each deployment's next run, and whether today is a session")
    status.set_defaults(command=_status)

    settings = commands.add_parser("settings", help="every setting: its variable, default, meaning and the value in force")
    settings.add_argument("--markdown", action="store_true", help="the reference table of docs/settings.md, defaults only")
    settings.set_defaults(command=_settings)

    doctor = commands.add_parser("doctor", help="connect to the configured broker and show the account, or what is wrong")
    doctor.set_defaults(command=_doctor)

    down = commands.add_parser("down", help="stop what `openbell up` started")
    down.set_defaults(command=_down)
    return parser


def _settings(args: argparse.Namespace) -> int:
    """Every setting, generated from the fields; the values the environment sets are marked (secrets hidden)."""
    from openbell.config import load_settings, settings_reference

    if args.markdown:
        print(settings_markdown())
        return 0
    rows = settings_reference(load_settings())
    width = max(len(name) for name, *_ in rows)
    for name, default, description, current in rows:
        value = f"{current}  (default {default})" if current is not None else default
        marker = "*" if current is not None else " "
        print(f"{marker} {name:<{width}}  {value}\n    {description}")
    print("\n* set in this environment")
    return 0


def settings_markdown() -> str:
    """docs/settings.md: every setting with its default and meaning (a test keeps the file equal to this)."""
    from openbell.config import settings_reference

    lines = [
        "# Settings",
        "",
        "Every setting openbell reads, generated from its fields by `openbell settings --markdown` (a test",
        "keeps this file equal to that output). `openbell settings` shows the values in force.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for name, default, description, _ in settings_reference():
        cells = (f"`{name}`", default, description)
        lines.append("| " + " | ".join(c.replace("|", r"\|").replace("<", "&lt;") for c in cells) + " |")
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    """A replayed day through the flows, then a backtest of every session of the synthetic market."""
    from openbell import wiring
    from openbell.config import RunOptions
    from openbell.research import console, jobs
    from openbell.research.backtest import BacktestSpec

    options = RunOptions(db_path=str(args.db) if args.db else None)
    _run_day(None, None, options)
    settings = options.settings()
    sessions = wiring.replay_source(settings).sessions()
    print(f"\nopenbell: backtesting the synthetic market's {len(sessions)} sessions, {sessions[0]} to {sessions[-1]}")
    finished = jobs.backtest(BacktestSpec(settings, sessions[0], sessions[-1]))
    console.print_backtest(finished, settings.data.database)
    return 0


def _add_day_options(command: argparse.ArgumentParser, *, exits: bool = True) -> None:
    """The options of a replayed day that a backtest takes too (a sweep brings its own exits)."""
    from openbell.config import RankerName, described

    command.add_argument("--bars", type=Path, help="minute-bar Parquet (default: the synthetic market)")
    command.add_argument("--daily", type=Path, help="daily-bar Parquet (default: the synthetic market)")
    command.add_argument("--symbols", type=_symbols, help="trade these symbols instead of the scan, e.g. AAPL,TSLA")
    command.add_argument("--db", type=Path, help=_DB_HELP)
    if exits:
        command.add_argument("--target-pct", type=_decimal, help=described("OPENBELL_EXITS__TARGET_PCT", flag=True))
        command.add_argument("--stop-pct", type=_decimal, help=described("OPENBELL_EXITS__STOP_PCT", flag=True))
    command.add_argument("--allocation", type=_decimal, help=described("OPENBELL_SIZING__ALLOCATION", flag=True))
    command.add_argument("--ranker", choices=get_args(RankerName), help=described("OPENBELL_RANKING__METHOD", flag=True))
    command.add_argument(
        "--fresh-llm", action="store_true", help="ask the LLM again even if this prompt's reply was recorded"
    )


def _run_options(args: argparse.Namespace):
    """RunOptions from the command's flags; a bad value is one line naming the flag."""
    from openbell.config import RunOptions

    if (args.bars is None) != (args.daily is None):
        raise ConfigError("give both --bars and --daily, or neither to use the synthetic market")
    values = {
        "db_path": str(args.db) if args.db else None,
        "minute_bars": str(args.bars) if args.bars else None,
        "daily_bars": str(args.daily) if args.daily else None,
        "target_pct": getattr(args, "target_pct", None),
        "stop_pct": getattr(args, "stop_pct", None),
        "allocation": args.allocation,
        "ranker": args.ranker,
        "fresh_llm": args.fresh_llm or None,
        "slippage_bps": getattr(args, "slippage_bps", None),
        "starting_equity": getattr(args, "starting_equity", None),
    }
    try:
        return RunOptions(**values)
    except ValidationError as exc:
        problems = "; ".join(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        raise ConfigError(problems) from None


def _replay(args: argparse.Namespace) -> int:
    return _run_day(args.date, args.symbols, _run_options(args))


def _backtest(args: argparse.Namespace) -> int:
    from openbell.research import console, jobs
    from openbell.research.backtest import BacktestSpec

    options = _run_options(args)
    settings = options.settings()
    symbols = tuple(args.symbols) if args.symbols else None
    spec = BacktestSpec(settings, args.start, args.end, symbols, fresh_llm=args.fresh_llm)
    if address := args.dask or settings.research.dask_address:
        summary = _run_on_dask("openbell.flows.backtest", "backtest", address, settings, dict(
            start=args.start, end=args.end, symbols=args.symbols, options=options, fresh_llm=args.fresh_llm,
            report_path=str(args.report) if args.report else None,
        ))  # fmt: skip
        console.print_summary(summary, settings.data.database)
        return 0
    with console.session_progress("planning sessions") as progress:
        finished = jobs.backtest(spec, report_to=args.report, progress=progress)
    console.print_backtest(finished, settings.data.database)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from openbell.research import console, jobs
    from openbell.research.backtest import BacktestSpec
    from openbell.research.sweep import SweepSpec, parse_grid, parse_times

    options = _run_options(args)
    settings = options.settings()
    symbols = tuple(args.symbols) if args.symbols else None
    spec = SweepSpec(
        BacktestSpec(settings, args.start, args.end, symbols, fresh_llm=args.fresh_llm),
        parse_grid(args.target_grid, "--target-pct"),
        parse_grid(args.stop_grid, "--stop-pct"),
        parse_times(args.liquidation),
        metric=args.metric,
        in_sample=args.in_sample,
    )
    if address := args.dask or settings.research.dask_address:
        summary = _run_on_dask("openbell.flows.sweep", "sweep", address, settings, dict(
            start=args.start, end=args.end, target_pct=args.target_grid, stop_pct=args.stop_grid,
            liquidation=args.liquidation, metric=args.metric, in_sample=args.in_sample, symbols=args.symbols,
            options=options, report_path=str(args.report) if args.report else None,
        ))  # fmt: skip
        console.print_notes(summary)
        return 0
    with console.session_progress("planning sessions") as progress:
        swept = jobs.sweep(spec, report_to=args.report, progress=progress)
    console.print_sweep(swept, settings.data.database)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from openbell.research import console, jobs
    from openbell.research.backtest import BacktestSpec
    from openbell.research.compare import RANKERS

    if args.symbols:
        raise ConfigError("compare ranks the scan's candidates: leave out --symbols")
    settings = _run_options(args).settings()
    spec = BacktestSpec(settings, args.start, args.end, fresh_llm=args.fresh_llm)
    with console.session_progress("scanning and ranking sessions") as progress:
        finished = jobs.compare(spec, rankers=tuple(args.rankers or RANKERS), report_to=args.report, progress=progress)
    console.print_comparison(finished, settings.data.database)
    return 0


def _run_on_dask(module: str, name: str, address: str, settings, parameters: dict) -> dict:
    """Run a research flow with its sessions planned on the Dask cluster at `address`, reporting to a Prefect API."""
    from prefect_dask import DaskTaskRunner

    from openbell.prefect_api import sigterm_interrupts

    research_flow = _flow(module, name).with_options(task_runner=DaskTaskRunner(address=address))
    with sigterm_interrupts():
        api = _open_prefect_api(settings)
        try:
            with _flow_runs(api):
                return research_flow(**parameters)
        finally:
            api.stop()


def _run_day(trade_date: date | None, symbols: list[str] | None, options) -> int:
    from openbell.prefect_api import sigterm_interrupts

    settings = options.settings()
    with sigterm_interrupts():  # a stopped run cleans up as after Ctrl-C: no temporary server left behind
        return _replay_day(settings, trade_date, symbols, options)


def _replay_day(settings, trade_date: date | None, symbols: list[str] | None, options) -> int:
    from openbell import wiring

    wiring.require_ready_to_trade(settings)  # the live switch and the broker's keys, before anything starts
    market = wiring.market_for(settings)  # checks both files (or generates the synthetic market)
    day = wiring.resolve_trade_date(trade_date, "replay", settings)
    wiring.store_for(settings)  # a store that cannot be opened stops here, before any flow
    api = _open_prefect_api(settings)  # a temporary server boots while the day's bars are read and the flows load
    try:
        bars = market.minute_bars(day)  # raises a clear DataQualityError when the day has no bars
        if symbols:
            unknown = sorted(set(symbols) - set(bars["symbol"]))
            if unknown:
                raise ConfigError(f"unknown symbol(s) {', '.join(unknown)}: no minute bars on {day}")
        print(f"openbell: replaying {day} into {settings.data.database}", flush=True)
        trading_day = _flow("openbell.flows.trading_day", "trading_day")
        with _flow_runs(api):
            report = trading_day(trade_date=day, mode="replay", symbols=symbols, options=options)
    finally:
        api.stop()
    print(report)
    print(f"\nexplore it: openbell query --db {settings.data.database} \"SELECT * FROM trades WHERE trade_date = '{day}'\"")
    return 0


def _open_prefect_api(settings):
    """The API for this process's flow runs: the configured one, `openbell up`'s, or a temporary server."""
    from openbell import prefect_api, service

    files = service.ServiceFiles.of(settings)
    api = prefect_api.open_api(service.running_api(settings), files.prefect_home, files.logs / "temporary-server.log")
    if api.source == "openbell up":
        print(f"openbell: the runs go to the server `openbell up` started: {api.url.removesuffix('/api')}/runs", flush=True)
    return api


def _store_of(args: argparse.Namespace, *, importing: bool = False, book: Book = "replay"):
    """The store the command names: --db, else the settings' one (a file, or a shared catalog)."""
    from openbell.config import load_settings
    from openbell.store import Lake, Store

    data = load_settings().data
    lake = Lake.at(args.db) if args.db else data.lake()
    if not importing and not lake.exists() and not args.db and data.legacy_database.exists():
        raise ConfigError(
            f"no store at {lake.describe()} yet, but {data.legacy_database} holds an earlier openbell's records: "
            "move them with `openbell store migrate` (or run any flow, which does it)"
        )
    return Store(lake, lock_timeout=data.lock_timeout_s, book=book)


def _reconcile(args: argparse.Namespace) -> int:
    """The live book's trades of the date against the replay book's, one row per symbol, and the verdict."""
    from openbell.core.reconcile import reconcile_trades
    from openbell.store import records

    store = _store_of(args)
    if not store.lake.exists():
        raise ConfigError(f"no store at {store.lake.describe()}; check the path, or let a flow create it first")
    store.migrate()  # as any flow would: a store of an earlier openbell gains its live book
    books = records.live_and_replayed_trades(store, args.date)
    for book, frame in books.items():
        if frame.empty:
            hint = "trade it live (mode live) first" if book == "live" else f"replay it: openbell replay --date {args.date}"
            raise ConfigError(f"no {book} trades on {args.date} in {store.lake.describe()}; {hint}")
    result = reconcile_trades(books["live"], books["replayed"], args.tolerance_pct)
    shown = result.rows.rename(columns=lambda c: c.replace("_replayed", "_rep"))
    print(f"{args.date}: traded live (live.trades) against its replay (trades)")
    print(shown.to_string(index=False, na_rep="-"))
    for label, symbols in (("only live", result.only_live), ("only replayed", result.only_replayed)):
        if symbols:
            print(f"{label}: {', '.join(symbols)}")
    print(result.verdict())
    return 0


def _query(args: argparse.Namespace) -> int:
    store = _store_of(args)
    try:
        frame = store.query_df(args.sql, read_only=True)
    except OpenbellError:
        raise
    except Exception as exc:  # a user's SQL error: report DuckDB's own words
        raise ConfigError(f"query failed: {str(exc).splitlines()[0]}") from None
    if args.format == "csv":
        print(frame.to_csv(index=False), end="")
    elif args.format == "json":
        records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
        print(json.dumps(records, indent=2, default=_json_value))
    else:
        print(frame.to_string(index=False) if len(frame) else "(no rows)")
    return 0


def _store_attach(args: argparse.Namespace) -> int:
    from openbell.store.lake import ALIAS, extension_directory

    lake = _store_of(args).lake
    print("In the DuckDB CLI (read-only; its extensions: INSTALL ducklake; INSTALL sqlite, once, online):")
    print(f'  duckdb -cmd "{lake.user_attach_sql()}; USE {ALIAS};"')
    print("Offline, with the extensions openbell installed (DuckDB 1.4.4):")
    print(f"  SET extension_directory = '{extension_directory()}';")
    print("In Python, for notebooks and scripts:")
    call = f"openbell.store.connect({str(args.db)!r})" if args.db else "openbell.store.connect()"
    print(f"  import openbell.store; con = {call}")
    return 0


def _store_migrate(args: argparse.Namespace) -> int:
    from openbell.config import load_settings
    from openbell.store.convert import import_legacy

    source = args.file or load_settings().data.legacy_database
    store = _store_of(args, importing=True)
    copied = import_legacy(source, store)
    width = max(map(len, copied), default=0)
    for table, rows in copied.items():
        print(f"  {table:{width}s} {rows:>10,}")
    print(f"openbell: moved {sum(copied.values()):,} rows from {source} into {store.path}, each table's count checked; "
          f"{source} is unchanged")  # fmt: skip
    return 0


def _store_housekeep(args: argparse.Namespace) -> int:
    from openbell.config import load_settings

    store = _store_of(args)
    wanted = load_settings().data.housekeeping()
    done = store.housekeep(**(wanted | {"merge_above_files": 0, "flush": True} if args.merge else wanted))
    print(f"openbell: {done}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from openbell.config import load_settings
    from openbell.doctor import examine

    noisy = [logging.getLogger(name) for name in ("ib_async", "openbell", "urllib3")]
    levels = [logger.level for logger in noisy]
    for logger in noisy:  # connection retries: the verdict comes in one line below
        logger.setLevel(logging.CRITICAL)
    try:
        print("\n".join(examine(load_settings(), _now())))
    finally:
        for logger, level in zip(noisy, levels, strict=True):
            logger.setLevel(level)
    return 0


def _up(args: argparse.Namespace) -> int:
    from openbell import service
    from openbell.config import load_settings

    settings = load_settings()
    names = service.up(settings, args.port, say=lambda line: print(f"openbell: {line}", flush=True))
    print(f"openbell: up, serving {len(names)} deployments\n")
    print(service.render_status(service.status(settings, _now())))
    print("\nstop it with: openbell down")
    return 0


def _status(args: argparse.Namespace) -> int:
    from openbell import service
    from openbell.config import load_settings

    print(service.render_status(service.status(load_settings(), _now())))
    return 0


def _down(args: argparse.Namespace) -> int:
    from openbell import service
    from openbell.config import load_settings

    stopped = service.down(load_settings())
    for line in stopped or ["nothing to stop: openbell is not running"]:
        print(f"openbell: {line}")
    return 0


def _now() -> datetime:
    from openbell.core.types import NEW_YORK

    return datetime.now(NEW_YORK)


def _json_value(value):
    """Dates and times as ISO text in New York time, the way the table and CSV show them."""
    if not hasattr(value, "isoformat"):
        return str(value)
    naive_midnight = getattr(value, "tzinfo", None) is None and hasattr(value, "hour") and value.time() == time(0)
    return value.date().isoformat() if naive_midnight else value.isoformat()  # DATE columns come back as midnight


def _flatten(args: argparse.Namespace) -> int:
    from openbell import wiring
    from openbell.config import RunOptions

    options = RunOptions(db_path=str(args.db) if args.db else None)
    settings = options.settings()
    day, at = args.replay if args.replay else (None, None)
    mode: wiring.Mode = "replay" if args.replay else "live"
    wiring.require_ready_to_trade(settings)
    wiring.store_for(settings, mode)  # a store that cannot be opened stops here, before any flow
    api = _open_prefect_api(settings)
    try:
        flatten_now = _flow("openbell.flows.flatten_now", "flatten_now")
        with _flow_runs(api):
            sold = flatten_now(trade_date=day, mode=mode, options=options, dry_run=args.dry_run, at=at)
    finally:
        api.stop()
    print(f"openbell: {sold} position(s) {'would be ' if args.dry_run else ''}sold; the flow's log has each order")
    return 0


def _risk_status(args: argparse.Namespace) -> int:
    import dataclasses

    from openbell.config import load_settings
    from openbell.store import ledger, records

    limits = load_settings().risk.limits()
    on = {k: v for k, v in dataclasses.asdict(limits).items() if v is not None and k != "drawdown_sessions"}
    print("limits: " + (", ".join(f"{k} {v}" for k, v in on.items()) if on else "none (every limit is off)"))
    store = _store_of(args, book="replay" if args.replay else "live")
    if not store.lake.exists():  # nothing traded yet: nothing to show, and nothing to create
        print(f"new entries: allowed (no store at {store.lake.describe()} yet, so no risk events)")
        return 0
    store.migrate()  # as any flow would: a store of an earlier openbell gains the tables read here
    halt = ledger.risk_halt(store, _now().date())
    print(f"new entries: {'halted: ' + halt.reason if halt else 'allowed'}")
    events = records.latest_risk_events(store)
    print("latest events:" if len(events) else "no risk events yet")
    if len(events):
        print(events.to_string(index=False))
    return 0


def _risk_reset(args: argparse.Namespace) -> int:
    from openbell.core.risk import Action, RiskEvent, Rule
    from openbell.store import ledger

    store = _store_of(args, book="replay" if args.replay else "live")
    store.migrate()
    now = _now()
    halt = ledger.risk_halt(store, now.date())
    event = RiskEvent(now.date(), now, Rule.MAX_DRAWDOWN_PCT, Action.RESET, "new entries resumed by `openbell risk reset`")
    ledger.record_risk_events(store, [event])
    if halt is None:
        print("openbell: no drawdown halt was in force; the drawdown is measured from now on")
    elif halt.rule is Rule.MAX_DRAWDOWN_PCT:
        print(f"openbell: new entries resume from the next session (was: {halt.reason})")
    else:
        print(f"openbell: the drawdown is measured from now on; today stays halted: {halt.reason}")
    return 0


def _replay_moment(text: str) -> tuple[date, time]:
    day, _, at = text.partition("@")
    try:
        return date.fromisoformat(day), time.fromisoformat(at)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a replayed moment like 2018-03-01@10:30") from None


def _flow(module: str, name: str):
    return getattr(importlib.import_module(module), name)


@contextmanager
def _flow_runs(api) -> Iterator[None]:
    """Flow runs against `api` (once it answers), without the per-run heartbeat thread (about a second
    per flow) and analytics; no "View at" links when the server has no UI (the temporary one)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, PREFECT_UI_URL, temporary_settings

    from openbell.prefect_api import drain_workers

    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    url = api.wait_until_ready(say=lambda line: print(f"openbell: {line}", file=sys.stderr, flush=True))
    updates = {PREFECT_API_URL: url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    if api.source == "temporary":
        updates[PREFECT_UI_URL] = ""
    with temporary_settings(updates=updates):
        try:
            yield
        finally:
            drain_workers()


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2018-03-01") from None


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _names(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give names separated by commas, e.g. gap_x_rvol,ensemble")
    return names


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def _symbols(text: str) -> list[str]:
    symbols = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not symbols:
        raise argparse.ArgumentTypeError("give symbols separated by commas, e.g. AAPL,TSLA")
    return symbols


if __name__ == "__main__":
    sys.exit(main())
