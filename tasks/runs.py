"""Run bookkeeping: what each flow run was asked to do, for which day, and how it ended."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from prefect import get_run_logger, runtime, task
from prefect.cache_policies import NO_CACHE

from openbell import calendar
from openbell import runtime as wiring
from openbell.config import RunOptions, Settings


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every task of a flow run needs: plain values, no open connections."""

    run_id: str
    flow: str
    trade_date: date
    mode: wiring.Mode
    settings: Settings
    closed: str | None = None  # why the exchange is closed that day: the flow then does nothing
    dry_run: bool = False  # decide and log, send no order


@task(cache_policy=NO_CACHE)
def begin_run(
    flow: str, trade_date: date | None, mode: wiring.Mode, options: RunOptions, dry_run: bool = False
) -> RunContext:
    """Resolve settings and the trade date (failing early with a clear error), and record the run.

    On a day the exchange is closed (a live run on a holiday), logs "market closed: <reason>" and
    returns a context whose `closed` tells the flow to stop there.
    """
    settings = options.settings()
    day = wiring.resolve_trade_date(trade_date, mode, settings)
    closed = calendar.closed_reason(day)
    if closed:
        get_run_logger().info("market closed: %s (%s); %s does nothing today", closed, day, flow)
    run_id = str(runtime.flow_run.id or uuid.uuid4())
    wiring.store_for(settings).upsert(
        "runs",
        [
            {
                "run_id": run_id,
                "flow": flow,
                "trade_date": day,
                "mode": mode,
                "parameters": json.dumps(options.model_dump(mode="json", exclude_none=True)),
                "started_at": datetime.now(calendar.NEW_YORK),
                "status": "closed" if closed else "running",
                "finished_at": datetime.now(calendar.NEW_YORK) if closed else None,
                "message": f"market closed: {closed}" if closed else None,
            }
        ],
    )
    return RunContext(run_id, flow, day, mode, settings, closed, dry_run)


@task(cache_policy=NO_CACHE)
def finish_run(run: RunContext, message: str) -> None:
    wiring.store_for(run.settings).execute(
        "UPDATE runs SET finished_at = ?, status = 'completed', message = ? WHERE run_id = ?",
        [datetime.now(calendar.NEW_YORK), message, run.run_id],
    )


@task(cache_policy=NO_CACHE)
def clear_replayed_day(trade_date: date | None, mode: wiring.Mode, options: RunOptions, replace: bool) -> date:
    """Resolve the day; for a replay with `replace`, remove that date's earlier replay first.

    Replaying a date again then replaces its rows instead of adding to them. Live days are never
    cleared: their orders are real and their records are the audit trail.
    """
    settings = options.settings()
    day = wiring.resolve_trade_date(trade_date, mode, settings)
    if replace and mode == "replay":
        removed = wiring.store_for(settings).delete_day(day)
        if removed:
            get_run_logger().info(
                "replacing the earlier replay of %s: removed %s", day, ", ".join(f"{n} {t}" for t, n in removed.items())
            )
    return day
