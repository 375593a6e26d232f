"""Shared fixtures: one Prefect test harness per session, the shared market data, fresh databases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MINUTE_FILE = SHARED_DATA / "minute_bars_2018-02-16_2018-03-09.parquet"
DAILY_FILE = SHARED_DATA / "daily_bars_2017-01-03_2018-03-09.parquet"


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the whole session, without the per-flow heartbeat thread."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            _first_flow_run()
            yield


def _first_flow_run() -> None:
    """One empty flow run, so Prefect's once-per-process logging setup (which replaces the root logger's
    handlers, caplog's among them) happens here and not inside the first test that reads its log lines."""
    from prefect import flow

    flow(name="warm-up", log_prints=False)(lambda: None)()


@pytest.fixture(scope="session")
def shared_data() -> tuple[Path, Path]:
    """(minute, daily) Parquet files of ../shared/data; skips when the folder is absent."""
    if not (MINUTE_FILE.exists() and DAILY_FILE.exists()):
        pytest.skip(f"recorded market data not found at {SHARED_DATA} (a fresh clone has no ../shared; CI does)")
    return MINUTE_FILE, DAILY_FILE


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A private data folder: its own database and synthetic market for this test."""
    folder = tmp_path / "data"
    monkeypatch.setenv("OPENBELL_DATA__DIR", str(folder))
    return folder
