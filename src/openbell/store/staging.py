"""Replacing a replayed day whole: the new replay is built apart and swapped in by one transaction.

A replay of a date that the replay book already holds runs against a staged store: a scratch lake
next to the store holding everything the day's flows read (the replay book without that date, the
LLM replies and headlines they may reuse), but not the research records. When the day is done,
`commit_day` replaces the date's rows in the store in one transaction and adds the runs, LLM calls
and headlines the replay made. Until then readers see the earlier replay, whole; a replay that fails
or is killed leaves it as it was (and its scratch lake behind, removed by the next staging).

The live book is never staged, read or touched here.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from openbell.errors import ConfigError
from openbell.processes import alive
from openbell.store.db import Store
from openbell.store.lake import Lake, detach, one_row
from openbell.store.migrations import BOOK_TABLES, DAY_TABLES, KEYS

STAGING = ".staging"  # the scratch lakes' folder, next to the store's catalog
CATALOG = "openbell.ducklake"
_RESEARCH = ("backtest_runs", "backtest_trades", "backtest_daily", "backtest_metrics")
_NOT_COPIED = frozenset({"schema_migrations", "runs", *_RESEARCH})  # what a day's flows never read


def staging_folder(store: Store) -> Path:
    """Where `store`'s scratch lakes go."""
    if store.lake.sqlite_file is None:
        raise ValueError(f"{store} has no catalog file to stage next to")
    return store.lake.sqlite_file.parent / STAGING


def has_day(store: Store, day: date) -> bool:
    """True when the replay book holds rows of `day` (a replay of it would replace them)."""
    union = " UNION ALL ".join(f"SELECT 1 FROM {t} WHERE trade_date = $day" for t in DAY_TABLES)
    return bool(store.query(f"SELECT count(*) FROM ({union})", {"day": day})[0][0])


def stage_day(store: Store, day: date) -> Store:
    """A scratch store holding what a replay of `day` reads from `store`: the replay book without `day`.

    Scratch lakes left by replays that died are removed first.
    """
    folder = staging_folder(store)
    sweep_abandoned(store)
    scratch = Store(Lake.at(folder / f"{day:%Y%m%d}-{os.getpid()}-{uuid.uuid4().hex[:8]}" / CATALOG))
    scratch.migrate()
    tables = [t for t in _tables(store) if t not in _NOT_COPIED]
    with store.snapshot() as source:
        copies = {t: _arrow(source, t, "trade_date IS DISTINCT FROM ?" if t in DAY_TABLES else "", day) for t in tables}
    with scratch.transaction() as con:
        for table, rows in copies.items():
            if rows.num_rows:
                _insert_rows(con, table, rows)
    return scratch


def commit_day(store: Store, scratch: Store, day: date) -> dict[str, int]:
    """Replace `day` in `store`'s replay book with the scratch store's, in one transaction.

    The paper account's holdings become the scratch's; runs, LLM calls and headlines the replay made
    are added (rows whose key the store already holds are kept as they are). Returns the rows written
    per table.
    """
    with scratch.snapshot() as source:
        day_rows = {t: _arrow(source, t, "trade_date = ?", day) for t in DAY_TABLES}
        holdings = _arrow(source, "paper_holdings")
        others = {t: _arrow(source, t) for t in _tables(scratch) if t not in BOOK_TABLES and t in KEYS}
    written: dict[str, int] = {}
    with store.transaction() as con:
        for table in DAY_TABLES:
            con.execute(f"DELETE FROM {table} WHERE trade_date = ?", [day])
        con.execute("DELETE FROM paper_holdings")
        for table, rows in [*day_rows.items(), ("paper_holdings", holdings)]:
            if rows.num_rows:
                _insert_rows(con, table, rows)
                written[table] = rows.num_rows
        for table, rows in others.items():
            if not rows.num_rows:
                continue
            same_key = " AND ".join(f"kept.{k} = staged_rows.{k}" for k in KEYS[table])
            n = _insert_rows(con, table, rows, f"WHERE NOT EXISTS (SELECT 1 FROM {table} AS kept WHERE {same_key})")
            if n:
                written[table] = n
    return written


def discard(scratch: Store) -> None:
    """Remove a scratch store's folder (its catalog and files)."""
    folder = scratch.lake.sqlite_file.parent if scratch.lake.sqlite_file else None
    if folder is not None and folder.parent.name == STAGING:
        detach(scratch.lake)
        shutil.rmtree(folder, ignore_errors=True)


def sweep_abandoned(store: Store) -> list[Path]:
    """Remove the scratch lakes of `store` whose replay process is gone; returns what was removed.

    The runs they recorded go to `store` first (the audit log keeps every execution), those still
    `running` marked crashed.
    """
    folder, removed = staging_folder(store), []
    for path in sorted(folder.glob("*-*-*")) if folder.is_dir() else []:
        pid = path.name.split("-")[1]
        if not pid.isdigit() or int(pid) == os.getpid() or alive(int(pid)):
            continue
        scratch = Store(Lake.at(path / CATALOG))
        if scratch.lake.exists():
            try:
                _salvage_runs(store, scratch, path.name)
            except (duckdb.Error, ConfigError):  # a scratch killed before its catalog was whole: nothing to keep
                pass
            detach(scratch.lake)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _salvage_runs(store: Store, scratch: Store, name: str) -> None:
    with scratch.snapshot() as source:
        runs = _arrow(source, "runs")
    if not runs.num_rows:
        return
    with store.transaction() as con:
        _insert_rows(
            con,
            "runs",
            runs,
            tail_sql="WHERE run_id NOT IN (SELECT run_id FROM runs)",
            columns="* REPLACE ("
            "CASE WHEN status = 'running' THEN 'crashed' ELSE status END AS status, "
            "CASE WHEN status = 'running' THEN ? ELSE message END AS message)",
            params=[f"crashed: its staged replay ({name}) was abandoned"],
        )


def _tables(store: Store) -> list[str]:
    return [
        t
        for (t,) in store.query(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
            "AND table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
    ]


def _arrow(con, table: str, where: str = "", day: date | None = None) -> pa.Table:
    """A table's rows as Arrow (types kept exactly): all of them, or those `where` holds for `day` (its `?`)."""
    if not where:
        return con.execute(f"SELECT * FROM {table}").fetch_arrow_table()
    return con.execute(f"SELECT * FROM {table} WHERE {where}", [day]).fetch_arrow_table()


def _insert_rows(
    con, table: str, rows: pa.Table, tail_sql: str = "", *, columns: str = "*", params: Sequence[object] = ()
) -> int:
    """Insert Arrow `rows` into `table`; `columns` and `tail_sql` may name them as `staged_rows`. Returns the count."""
    con.register("staged_rows", rows)
    (n,) = one_row(con, f"INSERT INTO {table} SELECT {columns} FROM staged_rows {tail_sql}", list(params))
    con.unregister("staged_rows")
    return n
