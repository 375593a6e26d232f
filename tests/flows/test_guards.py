"""Guards that keep a scheduled system safe: closed markets, dry runs, artifacts for the UI."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from openbell.errors import ConfigError
from openbell.store import Store

pytestmark = pytest.mark.slow

THANKSGIVING = date(2026, 11, 26)


def _count(data_dir, sql: str) -> int:
    return Store(data_dir / "openbell.ducklake").query(sql)[0][0]


def test_every_phase_does_nothing_on_a_holiday(prefect_harness, data_dir):
    from openbell.flows.liquidate_eod import liquidate_eod
    from openbell.flows.monitor_exits import monitor_exits
    from openbell.flows.place_moo_orders import place_moo_orders
    from openbell.flows.report_eod import report_eod
    from openbell.flows.scan_and_rank import scan_and_rank

    results = [
        scan_and_rank(THANKSGIVING, mode="live"),
        place_moo_orders(THANKSGIVING, mode="live"),
        monitor_exits(THANKSGIVING, mode="live"),
        liquidate_eod(THANKSGIVING, mode="live"),
        report_eod(THANKSGIVING, mode="live"),
    ]

    assert results == [[], 0, 0, 0, ""]
    closed = "SELECT count(*) FROM runs WHERE status = 'closed' AND message = 'market closed: Thanksgiving'"
    assert _count(data_dir, closed) == 6  # scan and rank are two flows
    assert _count(data_dir, "SELECT count(*) FROM candidates") == 0


def test_a_live_session_without_live_data_fails_with_a_clear_reason(prefect_harness, data_dir):
    from openbell.flows.premarket_scan import premarket_scan

    with pytest.raises(ConfigError, match="live mode needs live market data"):
        premarket_scan(date(2026, 11, 27), mode="live")


def test_a_dry_run_sends_no_order(prefect_harness, data_dir):
    from openbell.flows.trading_day import trading_day

    trading_day(trade_date=date(2025, 3, 6), dry_run=True)

    assert _count(data_dir, "SELECT count(*) FROM sizing WHERE shares > 0") > 0
    assert _count(data_dir, "SELECT count(*) FROM paper_orders") == 0
    assert _count(data_dir, "SELECT count(*) FROM trades") == 0


def test_a_day_publishes_its_tables_and_report_as_artifacts(prefect_harness, data_dir):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from openbell.flows.trading_day import trading_day

    trading_day(trade_date=date(2025, 3, 5))

    async def keys() -> set[str]:
        async with get_client() as client:
            wanted = ["candidates", "ranking", "moo-orders", "eod-report"]
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=wanted)))
            return {a.key for a in found}

    assert asyncio.run(keys()) == {"candidates", "ranking", "moo-orders", "eod-report"}
