"""When each phase of the day runs: cron schedules in New York time, and the runs that really act.

Crons fire Monday to Friday at the phases' wall-clock times in New York (core.types.NEW_YORK_TZ), so a
run happens at the same New York time on both sides of a daylight-saving change. The exchange calendar
decides the rest inside each flow: on a holiday every flow exits at once, and liquidation and report
have a second cron at their half-day time (the exits' early_close_offset_min before the 13:00 early
close, and the report delay after it), which acts only on half days; the regular one acts only on
full days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from openbell import calendar
from openbell.config import Settings
from openbell.core.types import NEW_YORK
from openbell.wiring import day_times

# Deployments without a schedule, started from the UI's Run button: research, and flattening now.
ON_DEMAND = ("backtest", "sweep", "flatten-now")
EARLY_CLOSE = time(13, 0)  # every NYSE half day closes at 13:00


@dataclass(frozen=True, slots=True)
class PhaseSchedule:
    deployment: str  # deployment name, also the flow's name
    times: tuple[time, ...]  # New York wall-clock times the cron fires, Monday to Friday
    description: str

    @property
    def crons(self) -> list[str]:
        return [f"{t.minute} {t.hour} * * 1-5" for t in self.times]


def phase_schedules(settings: Settings) -> list[PhaseSchedule]:
    s, x = settings.schedule, settings.exits
    early_liquidation = _minus(EARLY_CLOSE, x.early_close_offset_min)
    report_delay = s.report_delay_min
    return [
        PhaseSchedule("scan-and-rank", (s.scan_time,),
                      "Pre-market scan of the universe, then the ranking that picks the day's trades."),
        PhaseSchedule("place-moo-orders", (s.moo_time,),
                      f"Size the picks and send market-on-open orders before the {s.moo_cutoff:%H:%M} cutoff."),
        PhaseSchedule("monitor-exits", (time(9, 30),),
                      "Protective exits for filled entries, watched from the open to the liquidation time."),
        PhaseSchedule("liquidate-eod", _distinct(x.liquidation_time, early_liquidation),
                      "Flatten what the system opened; on half days "
                      f"{x.early_close_offset_min} minutes before the early close."),
        PhaseSchedule("report-eod", _distinct(_plus(time(16, 0), report_delay), _plus(EARLY_CLOSE, report_delay)),
                      "Trades, P&L and the end-of-day report, after the close."),
    ]  # fmt: skip


def acting_time(deployment: str, day: date, settings: Settings) -> datetime | None:
    """When the phase really acts on `day` (New York), or None when the exchange is closed."""
    if not calendar.is_session(day):
        return None
    p = day_times(day, settings)
    return {
        "scan-and-rank": p.scan, "place-moo-orders": p.moo, "monitor-exits": p.open,
        "liquidate-eod": p.liquidation, "report-eod": p.report,
    }[deployment]  # fmt: skip


def next_runs(schedule: PhaseSchedule, after: datetime, count: int, settings: Settings) -> list[datetime]:
    """The next `count` times the phase acts after `after`: cron firings on sessions at that day's time."""
    runs: list[datetime] = []
    day = after.astimezone(NEW_YORK).date()
    while len(runs) < count:
        at = acting_time(schedule.deployment, day, settings)
        if at is not None and at > after and at.time() in schedule.times:
            runs.append(at)
        day += timedelta(days=1)
    return runs


def _plus(t: time, minutes: int) -> time:
    return (datetime.combine(date(2000, 1, 3), t) + timedelta(minutes=minutes)).time()


def _minus(t: time, minutes: int) -> time:
    return _plus(t, -minutes)


def _distinct(*times: time) -> tuple[time, ...]:
    return tuple(dict.fromkeys(times))
