"""openbell's records and the paper broker's books, in a DuckLake that readers can hold open all day."""

from __future__ import annotations

from pathlib import Path

import duckdb

from openbell.store.db import Store
from openbell.store.lake import ALIAS, Lake, open_reader
from openbell.store.migrations import DAY_TABLES

__all__ = ["DAY_TABLES", "Lake", "Store", "connect"]


def connect(path: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection to the store, for notebooks and scripts: `SELECT * FROM trades` just works.

    `path` is the store's catalog file; by default the settings' store (data/openbell.ducklake, or
    what OPENBELL_DATA__DB_PATH, __CATALOG and __DATA_PATH say). Keep it open as long as you like,
    inside a transaction too: the flows never wait for it, and it sees each commit once it starts a
    new transaction. Close it when done.

    Raises:
        ConfigError: there is no store there yet, or it cannot be opened.
    """
    if path is None:
        from openbell.config import Settings

        lake = Settings().data.lake()
    else:
        lake = Lake.at(path)
    con = open_reader(lake)
    con.execute(f"USE {ALIAS}")
    return con
