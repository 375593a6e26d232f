"""Backtests fan out to a Dask cluster through Prefect's task runner, and give what the in-process run gives."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from openbell.config import RunOptions
from openbell.research import jobs
from openbell.research.backtest import BacktestSpec
from openbell.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.shared_data, pytest.mark.timeout(600)]

START, END = date(2018, 2, 26), date(2018, 3, 2)


@pytest.fixture(scope="module")
def cluster():
    """A real dask.distributed cluster on this machine: a scheduler and two worker processes."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local


def test_a_backtest_planned_on_dask_equals_the_in_process_one(prefect_harness, cluster, shared_data, tmp_path):
    from distributed import Client
    from prefect_dask import DaskTaskRunner

    from openbell.flows.backtest import backtest

    minute, daily = shared_data
    options = RunOptions(db_path=str(tmp_path / "openbell.ducklake"), minute_bars=str(minute), daily_bars=str(daily))
    here = jobs.backtest(BacktestSpec(options.settings(), START, END), report_to=tmp_path / "here.html").result

    on_dask = backtest.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
    summary = on_dask(start=START, end=END, options=options, report_path=str(tmp_path / "dask.html"))

    with Client(cluster.scheduler_address) as client:  # what the scheduler handed to its workers
        handled = client.run_on_scheduler(
            lambda dask_scheduler: {name: dict(p.state_counts) for name, p in dask_scheduler.task_prefixes.items()}
        )
    store = Store(tmp_path / "openbell.ducklake")
    columns = "trade_date, symbol, shares, entry_ts, entry_price, exit_ts, exit_price, exit_reason, pnl, mfe_pct, mae_pct"
    trades = {
        run: store.query_df(f"SELECT {columns} FROM backtest_trades WHERE run_id = ? ORDER BY trade_date, symbol", [run])
        for run in (here.run_id, summary["run_id"])
    }
    assert len(trades[here.run_id]) > 10
    pd.testing.assert_frame_equal(trades[here.run_id], trades[summary["run_id"]])
    assert summary["metrics"] == pytest.approx(here.metrics, nan_ok=True)
    assert handled["plan_session_task"]["memory"] == 5, handled  # the five sessions, planned by the workers


def test_a_sweep_from_the_cli_on_dask_equals_the_in_process_one(
    prefect_harness, cluster, shared_data, tmp_path, monkeypatch
):
    from openbell.cli import main

    minute, daily = shared_data
    monkeypatch.setenv("OPENBELL_DATA__DB_PATH", str(tmp_path / "openbell.ducklake"))
    grid = ["--start", str(START), "--end", str(END), "--bars", str(minute), "--daily", str(daily),
            "--target-pct", "1:3:1", "--stop-pct", "0.5,1", "--liquidation", "15:45,15:00"]  # fmt: skip

    assert main(["sweep", *grid]) == 0
    assert main(["sweep", *grid, "--dask", cluster.scheduler_address]) == 0

    store = Store(tmp_path / "openbell.ducklake")
    (here, on_dask) = [r for (r,) in store.query("SELECT run_id FROM backtest_runs ORDER BY started_at")]
    metrics = {
        run: store.query_df(
            "SELECT variant, metric, value FROM backtest_metrics WHERE run_id = ? ORDER BY variant, metric", [run]
        )
        for run in (here, on_dask)
    }
    assert len(metrics[here]) == 3 * 2 * 2 * 13  # combinations x (11 metrics, in and out of sample)
    pd.testing.assert_frame_equal(metrics[here], metrics[on_dask])
