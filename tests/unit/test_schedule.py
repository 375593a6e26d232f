"""Phase schedules: New York wall-clock times through DST, holidays skipped, half days earlier."""

from __future__ import annotations

import asyncio
import inspect
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest
from prefect.server.schemas.schedules import CronSchedule

from openbell.config import load_settings
from openbell.core.types import NEW_YORK, NEW_YORK_TZ
from openbell.schedule import next_runs, phase_schedules

NY = NEW_YORK
SETTINGS = load_settings()
SCHEDULES = {s.deployment: s for s in phase_schedules(SETTINGS)}


def _at(y, m, d, hh, mm):
    return datetime(y, m, d, hh, mm, tzinfo=NY)


def test_there_is_one_deployment_per_phase():
    assert list(SCHEDULES) == ["scan-and-rank", "place-moo-orders", "monitor-exits", "liquidate-eod", "report-eod"]


@pytest.mark.parametrize(
    ("deployment", "crons"),
    [
        ("scan-and-rank", ["0 8 * * 1-5"]),
        ("place-moo-orders", ["20 9 * * 1-5"]),
        ("monitor-exits", ["30 9 * * 1-5"]),
        ("liquidate-eod", ["45 15 * * 1-5", "45 12 * * 1-5"]),
        ("report-eod", ["15 16 * * 1-5", "15 13 * * 1-5"]),
    ],
)
def test_crons_fire_weekdays_at_the_phase_times(deployment, crons):
    assert SCHEDULES[deployment].crons == crons


def test_prefect_fires_the_scan_at_8_new_york_time_on_both_sides_of_the_dst_change():
    dates = CronSchedule(cron=SCHEDULES["scan-and-rank"].crons[0], timezone=NEW_YORK_TZ).get_dates(
        n=3, start=_at(2026, 3, 5, 0, 0)
    )
    if inspect.isawaitable(dates):  # Prefect's sync/async shim hands back a coroutine in some contexts
        dates = asyncio.run(dates)
    local = [d.astimezone(NY) for d in dates]
    utc_hours = [d.astimezone(ZoneInfo("UTC")).hour for d in dates]
    assert [d.time() for d in local] == [time(8, 0)] * 3
    assert [d.date().isoformat() for d in local] == ["2026-03-05", "2026-03-06", "2026-03-09"]
    assert utc_hours == [13, 13, 12]  # EST before 2026-03-08, EDT after


def test_next_scan_runs_skip_thanksgiving():
    runs = next_runs(SCHEDULES["scan-and-rank"], _at(2026, 11, 24, 9, 0), 4, SETTINGS)
    assert runs == [_at(2026, 11, 25, 8, 0), _at(2026, 11, 27, 8, 0), _at(2026, 11, 30, 8, 0), _at(2026, 12, 1, 8, 0)]


def test_liquidation_moves_to_1245_on_the_half_day_after_thanksgiving():
    runs = next_runs(SCHEDULES["liquidate-eod"], _at(2026, 11, 25, 9, 0), 3, SETTINGS)
    assert runs == [_at(2026, 11, 25, 15, 45), _at(2026, 11, 27, 12, 45), _at(2026, 11, 30, 15, 45)]


def test_the_report_follows_the_early_close():
    runs = next_runs(SCHEDULES["report-eod"], _at(2026, 11, 26, 0, 0), 2, SETTINGS)
    assert runs == [_at(2026, 11, 27, 13, 15), _at(2026, 11, 30, 16, 15)]


def test_monitor_runs_at_the_open_across_the_dst_change():
    runs = next_runs(SCHEDULES["monitor-exits"], _at(2026, 3, 6, 10, 0), 2, SETTINGS)
    assert runs == [_at(2026, 3, 9, 9, 30), _at(2026, 3, 10, 9, 30)]
    assert runs[0].utcoffset() != _at(2026, 3, 6, 9, 30).utcoffset()


def test_changing_the_configured_times_changes_the_crons():
    settings = SETTINGS.updated({"schedule": {"scan_time": time(7, 45)}, "exits": {"liquidation_time": time(15, 50)}})
    schedules = {s.deployment: s for s in phase_schedules(settings)}
    assert schedules["scan-and-rank"].crons == ["45 7 * * 1-5"]
    assert schedules["liquidate-eod"].crons == ["50 15 * * 1-5", "45 12 * * 1-5"]
