"""Research results in the store, apart from the day tables: each run written whole under its run_id, or not at all."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

import pandas as pd

import openbell
from openbell.config import Settings
from openbell.research.results import BacktestResult
from openbell.store import Store

Kind = Literal["backtest", "sweep", "compare"]

log = logging.getLogger(__name__)


def record_run(
    store: Store,
    kind: Kind,
    results: dict[str, BacktestResult],
    *,
    run_id: str,
    settings: Settings,
    parameters: dict,
    started_at: datetime,
    wall_s: float,
    report_path: Path | None,
    extra_metrics: pd.DataFrame | None = None,
) -> None:
    """Write one research run: its `backtest_runs` row and every result's trades, days and metrics.

    `results` maps a variant (the ranker of a comparison; "" for a plain backtest) to its result.
    `extra_metrics` (columns metric, value, variant) adds rows such as a sweep's per combination.
    All rows go in one transaction: a failure leaves no part of the run behind.
    """
    start, end = parameters.get("start"), parameters.get("end")
    with store.batch(all_or_nothing=True):
        store.insert(
            "backtest_runs",
            [
                {
                    "run_id": run_id,
                    "kind": kind,
                    "start_date": start,
                    "end_date": end,
                    "parameters": json.dumps(parameters, default=str),
                    "data_files": json.dumps(data_files(settings)),
                    "code_version": code_version(),
                    "started_at": started_at,
                    "wall_s": wall_s,
                    "report_path": str(report_path) if report_path else None,
                }
            ],
        )
        for variant, result in results.items():
            if len(result.trades):
                store.insert("backtest_trades", result.trades.assign(run_id=run_id))
            if len(result.daily):
                store.insert("backtest_daily", result.daily.assign(run_id=run_id))
            metrics = [{"run_id": run_id, "metric": k, "value": v, "variant": variant} for k, v in result.metrics.items()]
            store.insert("backtest_metrics", metrics)
        if extra_metrics is not None and len(extra_metrics):
            store.insert("backtest_metrics", extra_metrics.assign(run_id=run_id))
    try:  # its rows into a few Parquet files; the run is recorded either way
        store.housekeep(**settings.data.housekeeping())
    except Exception as exc:
        log.warning("store housekeeping after %s skipped: %s", run_id, str(exc).splitlines()[0])


def data_files(settings: Settings) -> dict[str, dict]:
    """The replayed files (or the synthetic market's) with their size and SHA-256, so a result names its data."""
    data = settings.data
    if data.minute_bars is not None and data.daily_bars is not None:
        files = {"minute_bars": Path(data.minute_bars), "daily_bars": Path(data.daily_bars)}
    else:
        folder = data.dir / "synthetic"
        files = {"minute_bars": folder / "minute_bars.parquet", "daily_bars": folder / "daily_bars.parquet"}
    out = {}
    for name, path in files.items():
        path, stat = path.resolve(), path.stat()
        out[name] = {"path": str(path), "bytes": stat.st_size, "sha256": _sha256(path, stat.st_size, stat.st_mtime_ns)}
    return out


@lru_cache(maxsize=16)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:  # size and mtime: a changed file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """openbell's version, and the git commit of the checkout it runs from (with "+dirty" for local changes)."""
    root = Path(openbell.__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty=+dirty"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return openbell.__version__
    return f"{openbell.__version__} ({commit.stdout.strip()})" if commit.returncode == 0 else openbell.__version__
